import type { FastifyPluginAsync } from "fastify";
import type { HttpDeps } from "../types.js";

export const healthRoutes: FastifyPluginAsync<HttpDeps> = async (app, { health }) => {
  // Liveness: the process answers. Never touches Redis, so a Redis outage does not get
  // healthy API processes killed by their orchestrator.
  app.get("/health/live", { logLevel: "warn" }, async () => ({ status: "alive" }));

  app.get("/health/ready", { logLevel: "warn" }, async (_req, reply) => {
    const r = await health.readiness();
    return reply
      .code(r.ready ? 200 : 503)
      .send({ status: r.ready ? "ready" : "not_ready", reasons: r.reasons });
  });

  app.get("/health", async (_req, reply) => {
    const body = await health.detailed();
    return reply.code(body.status === "unhealthy" ? 503 : 200).send(body);
  });
};
