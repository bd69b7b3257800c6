import type { FastifyPluginAsync } from "fastify";
import type { HttpDeps } from "../types.js";

/**
 * Health for load balancers and operators. `/health/live`: the process answers (never touches
 * Redis, so a Redis outage does not get healthy processes restarted). `/health/ready`: 503
 * while warming up, draining or unable to serve (see HealthService.readiness). `/health`: the
 * detailed state with its reasons.
 */
export const healthRoutes: FastifyPluginAsync<HttpDeps> = async (app, { health }) => {
  app.get("/health/live", { logLevel: "warn", config: { access: "public" } }, async () => ({
    status: "alive",
  }));

  app.get("/health/ready", { logLevel: "warn", config: { access: "public" } }, async (_req, reply) => {
    const r = await health.readiness();
    return reply
      .code(r.ready ? 200 : 503)
      .header("cache-control", "no-store")
      .send({ status: r.ready ? "ready" : "not_ready", health: r.status, reasons: r.reasons });
  });

  app.get("/health", { config: { access: "public" } }, async (_req, reply) => {
    const body = await health.detailed();
    return reply
      .code(body.status === "unhealthy" ? 503 : 200)
      .header("cache-control", "no-store")
      .send(body);
  });
};
