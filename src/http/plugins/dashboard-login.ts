import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import type { Config } from "../../config/index.js";
import {
  type AppError,
  CrossOriginRequestError,
  ForbiddenError,
  UnauthorizedError,
} from "../../errors/catalog.js";
import { allows, type Security } from "../../security/index.js";
import { mediaResponse, RESPONSE_HEADERS } from "../openapi.js";
import { fromOtherOrigin, NO_KEYS_CONFIGURED, readCookies, SESSION_COOKIE } from "../auth.js";

const page = (message = "") => `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Inferline dashboard: sign in</title>
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
<main>
<h1>Inferline dashboard</h1>
${message ? `<p role="alert">${message}</p>` : ""}
<form method="post" action="/dashboard/login">
<label for="key">Admin API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
`;

/**
 * A browser's own request for a dashboard page (not the page's fetches, nor its scripts and
 * styles, which browsers do not ask for as HTML), including a mistyped one under /dashboard/.
 */
export function isDashboardPage(req: FastifyRequest): boolean {
  const path = req.url.split("?")[0] ?? "";
  return /^\/dashboard(\/.*)?$/.test(path) && (req.headers.accept ?? "").includes("text/html");
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * What such a request that failed shows (instead of the JSON an API client gets): the error in
 * words and a way on. A page load turned away for now (503 with Redis away: the session cannot
 * be checked; 429) loads again by itself once `Retry-After` has passed, so the dashboard comes
 * back when the service does.
 */
export function dashboardErrorPage(req: FastifyRequest, err: AppError): string {
  const retryAfter = Number(err.headers["retry-after"]);
  const again = req.method === "GET" && Number.isInteger(retryAfter) && retryAfter > 0;
  const back = req.url.startsWith("/dashboard/log") ? "/dashboard/login" : "/dashboard";
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Inferline dashboard: ${err.status}</title>
<link rel="icon" href="data:,">
${again ? `<meta http-equiv="refresh" content="${retryAfter}">\n` : ""}<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
<main>
<h1>Inferline dashboard</h1>
<p role="alert">${escapeHtml(err.message)} (${err.status} ${err.code})</p>
<p>${again ? `This page tries again every ${retryAfter} s. ` : ""}<a href="${back}">Try again</a></p>
</main>
</body>
</html>
`;
}

function cookie(req: FastifyRequest, value: string, maxAgeSeconds: number): string {
  // Secure whenever the client reached us over TLS (directly, or through a proxy saying so).
  const tls = req.protocol === "https" || req.headers["x-forwarded-proto"] === "https";
  return [
    `${SESSION_COOKIE}=${value}`,
    "Path=/",
    `Max-Age=${maxAgeSeconds}`,
    "HttpOnly",
    "SameSite=Strict",
    ...(tls ? ["Secure"] : []),
  ].join("; ");
}

/**
 * The dashboard's sign-in: a form posting an admin key, answered with a signed session cookie
 * (HttpOnly, SameSite=Strict, Secure over TLS), and its sign-out, which ends the session in
 * Redis. Sessions are checked by the auth hook.
 */
export const dashboardLogin: FastifyPluginAsync<{ config: Config; security: Security }> = async (
  app,
  { config, security },
) => {
  app.addContentTypeParser(
    "application/x-www-form-urlencoded",
    { parseAs: "string", bodyLimit: 4096 },
    (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
  );
  const isForm = (req: FastifyRequest) =>
    (req.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded");
  const html = (reply: FastifyReply, status: number, message?: string) =>
    reply
      .code(status)
      .type("text/html; charset=utf-8")
      .header("cache-control", "no-store")
      .send(page(message));

  app.get<{ Querystring: { ended?: unknown } }>(
    "/dashboard/login",
    {
      config: { access: "public" },
      schema: {
        querystring: {
          type: "object",
          properties: {
            // Any value, or several: the page only asks whether it is there.
            ended: {
              description: "Set by the dashboard when its session ended while it was open: the page says so",
            },
          },
        },
        response: { 200: mediaResponse("The sign-in page", "text/html") },
      },
    },
    async (req, reply) =>
      html(
        reply,
        200,
        req.query.ended === undefined ? undefined : "Your session has ended. Sign in again to go on.",
      ),
  );

  app.post<{ Body: unknown }>(
    "/dashboard/login",
    {
      config: {
        access: "public",
        bodies: "a form (Content-Type: application/x-www-form-urlencoded) or JSON (application/json)",
        documentedBody: {
          schema: {
            type: "object",
            properties: { key: { type: "string", description: "An API key with the admin scope" } },
            required: ["key"],
          },
          consumes: ["application/x-www-form-urlencoded", "application/json"],
        },
      },
      bodyLimit: 4096,
      schema: {
        summary: "Sign in to the dashboard with an admin key",
        description:
          "The key as a form field (`key`, from the sign-in page) or JSON `{key}`. Sets the session cookie; a form is sent on to /dashboard, JSON gets 204.",
        response: {
          204: { type: "null", description: "Signed in (JSON); the session cookie is set" },
          303: {
            type: "null",
            description: "Signed in (form): on to /dashboard; the session cookie is set",
            headers: { location: { type: "string", description: "/dashboard" } },
          },
          401: {
            description: "Error; code: unauthorized (a form gets the sign-in page again)",
            $ref: "Error#",
          },
          403: { description: "Error; code: forbidden, a key without the admin scope", $ref: "Error#" },
          503: {
            description: "Error; code: service_unavailable (Redis away: no session can be recorded)",
            $ref: "Error#",
          },
        },
      },
    },
    async (req, reply) => {
      // With authentication off the dashboard is open: there is no session to sign in to.
      if (config.AUTH_DISABLED)
        return isForm(req) ? reply.redirect("/dashboard", 303) : reply.code(204).send();
      const body = req.body as { key?: unknown } | null;
      // Pasted keys often bring a space or line break along; X-API-Key is trimmed as well.
      const key = typeof body?.key === "string" ? body.key.trim() : "";
      const principal = security.keys.verify(key);
      if (!principal || !allows(principal.scope, "admin")) {
        req.log.info({ event: "login_failed" }, "dashboard sign-in refused");
        // The form says what an API request would be told: 403 for a key without the admin
        // scope, and that no key can be valid on a server that has none.
        const noKeys = security.keys.size === 0;
        const refusal = principal
          ? new ForbiddenError("admin")
          : new UnauthorizedError(noKeys ? NO_KEYS_CONFIGURED : "the API key is not valid");
        if (!isForm(req)) throw refusal;
        return html(
          reply,
          refusal.status,
          principal
            ? "That key has no admin scope."
            : noKeys
              ? "No API keys are configured on this server (API_KEYS): no key can sign in. Create one with inferline keys create."
              : "That key is not valid.",
        );
      }
      req.log.info({ event: "login", key_name: principal.name }, "dashboard sign-in");
      const token = await security.sessions.issue(principal.id);
      void reply.header("set-cookie", cookie(req, token, security.sessions.ttlSeconds));
      return isForm(req) ? reply.redirect("/dashboard", 303) : reply.code(204).send();
    },
  );

  // Public, so that an expired or already ended session can still sign out; but like every
  // request acting with the session, only from the API's own pages (no forced sign-out by a
  // same-site page). The session ends in Redis first: if that fails the answer is 503 and the
  // cookie stays, so the operator is never told a session ended that still works.
  const logout = {
    summary: "End the dashboard session",
    response: {
      303: {
        type: "null",
        description: "Signed out: on to the sign-in page; the session cookie is cleared",
        headers: { location: { type: "string", description: "/dashboard/login" } },
      },
      403: { description: "Error; code: cross_origin_request", $ref: "Error#" },
      503: {
        description: "Error; code: service_unavailable (the session could not be ended; it still lives)",
        $ref: "Error#",
        headers: { "retry-after": RESPONSE_HEADERS["retry-after"] },
      },
    },
  };
  app.post(
    "/dashboard/logout",
    { config: { access: "public" }, bodyLimit: 4096, schema: logout },
    async (req, reply) => {
      if (fromOtherOrigin(req)) throw new CrossOriginRequestError();
      // Every session the browser holds ends, not only the first cookie of the name it sent.
      let ended = false;
      for (const token of readCookies(req, SESSION_COOKIE))
        if (await security.sessions.revoke(token)) ended = true;
      if (ended) req.log.info({ event: "logout" }, "dashboard sign-out");
      void reply.header("set-cookie", cookie(req, "", 0));
      return reply.redirect("/dashboard/login", 303);
    },
  );
};
