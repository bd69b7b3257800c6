import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type { FastifyPluginAsync } from "fastify";
import { MAX_PARAM_LENGTH, mediaResponse } from "../openapi.js";
import type { HttpDeps } from "../types.js";

const HERE = fileURLToPath(new URL("../dashboard/", import.meta.url));
const require = createRequire(import.meta.url);

/** The only files served, by name: no path from the request reaches the file system. */
const ASSETS: Readonly<Record<string, { path: () => string; type: string }>> = {
  "dashboard.js": { path: () => HERE + "dashboard.js", type: "text/javascript; charset=utf-8" },
  "dashboard.css": { path: () => HERE + "dashboard.css", type: "text/css; charset=utf-8" },
  // The charting library, from its npm package (no CDN).
  "uplot.js": {
    path: () => require.resolve("uplot/dist/uPlot.iife.min.js"),
    type: "text/javascript; charset=utf-8",
  },
  "uplot.css": { path: () => require.resolve("uplot/dist/uPlot.min.css"), type: "text/css; charset=utf-8" },
};

/**
 * `GET /dashboard`: a live page (polls /health and /api/stats every few seconds) with status and
 * reasons, workers, queues, throughput, latency, cache, errors, batches, the last hour as
 * charts, per-version predictions and accuracy, and failed jobs with a retry button. Scripts and
 * styles are files (no inline code, so a strict Content-Security-Policy holds).
 */
export const dashboardRoutes: FastifyPluginAsync<HttpDeps> = async (app, { config }) => {
  const cache = new Map<string, Buffer>();
  const load = async (name: string, path: string, edit?: (text: string) => string) => {
    let body = cache.get(name);
    if (!body) {
      body = await readFile(path);
      if (edit) body = Buffer.from(edit(body.toString("utf8")));
      cache.set(name, body);
    }
    return body;
  };
  // With authentication off there is no session, so nothing to sign out of.
  const withoutSignOut = (html: string) => html.replace(/\s*<form id="signout"[\s\S]*?<\/form>/, "");

  const page = { response: { 200: mediaResponse("The dashboard page", "text/html") } };
  app.get("/dashboard", { config: { access: "admin" }, schema: page }, async (_req, reply) =>
    reply
      .type("text/html; charset=utf-8")
      .header("cache-control", "no-store")
      .send(await load("index.html", HERE + "index.html", config.AUTH_DISABLED ? withoutSignOut : undefined)),
  );

  const asset = {
    params: {
      type: "object",
      properties: {
        name: {
          type: "string",
          maxLength: MAX_PARAM_LENGTH,
          description: `One of ${Object.keys(ASSETS).join(", ")}; any other is 404`,
        },
      },
    },
    response: {
      200: mediaResponse("A script or style sheet of the dashboard page", "text/javascript", "text/css"),
      404: { description: "Error; code: route_not_found", $ref: "Error#" },
    },
  };
  app.get<{ Params: { name: string } }>(
    "/dashboard/assets/:name",
    { config: { access: "admin" }, schema: asset },
    async (req, reply) => {
      const asset = Object.hasOwn(ASSETS, req.params.name) ? ASSETS[req.params.name] : undefined;
      if (!asset) return reply.callNotFound();
      return reply
        .type(asset.type)
        .header("cache-control", "private, max-age=300")
        .send(await load(req.params.name, asset.path()));
    },
  );
};
