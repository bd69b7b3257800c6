import type { FastifyInstance, FastifyPluginAsync } from "fastify";
import type { ApiTelemetry } from "../../telemetry/telemetry.js";
import { mediaResponse } from "../openapi.js";
import type { HttpDeps } from "../types.js";

/** Prometheus text of this process's registry; absent (404) with METRICS_ENABLED off. */
export const metricsRoutes: FastifyPluginAsync<HttpDeps> = async (app, { telemetry }) => {
  const metrics = telemetry.metrics;
  if (!metrics) return;
  const schema = { response: { 200: mediaResponse("Prometheus text exposition", "text/plain") } };
  app.get("/metrics", { logLevel: "warn", config: { access: "public" }, schema }, async (_req, reply) =>
    reply
      .type(metrics.contentType)
      .header("cache-control", "no-store")
      .send(await metrics.text()),
  );
};

/** Counts every answered request by route template (bounded), method and status. */
export function installRequestMetrics(app: FastifyInstance, telemetry: ApiTelemetry): void {
  if (!telemetry.enabled) return;
  app.addHook("onResponse", (req, reply, done) => {
    telemetry.requestFinished(
      req.routeOptions.url ?? "(none)",
      req.method,
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
    done();
  });
}
