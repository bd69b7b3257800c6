import type { FastifyPluginAsync } from "fastify";
import { objectResponse } from "../openapi.js";
import type { HttpDeps } from "../types.js";

/**
 * Health for load balancers and operators. `/health/live`: the process answers (never touches
 * Redis, so a Redis outage does not get healthy processes restarted). `/health/ready`: 503
 * while warming up, draining or unable to serve (see HealthService.readiness). `/health`: the
 * detailed state with its reasons.
 */
export const healthRoutes: FastifyPluginAsync<HttpDeps> = async (app, { health, config }) => {
  const ready = objectResponse("Ready", {
    status: { type: "string", enum: ["ready", "not_ready"] },
    health: { type: "string" },
    reasons: { type: "array", items: { type: "string" } },
  });
  const detailed = objectResponse("healthy, degraded or warming_up", {
    status: { type: "string", enum: ["healthy", "degraded", "warming_up", "unhealthy"] },
    reasons: { type: "array", items: { type: "string" } },
  });

  app.get(
    "/health/live",
    {
      logLevel: "warn",
      config: { access: "public" },
      schema: { response: { 200: objectResponse("The process answers", { status: { type: "string" } }) } },
    },
    async () => ({ status: "alive" }),
  );

  app.get(
    "/health/ready",
    {
      logLevel: "warn",
      config: { access: "public" },
      schema: {
        response: {
          200: ready,
          503: {
            ...ready,
            description:
              "Not ready: warming up, draining or unable to serve (see reasons; with HEALTH_PUBLIC=false there are none: GET /health with a key has them)",
          },
        },
      },
    },
    async (_req, reply) => {
      const r = await health.readiness();
      return (
        reply
          .code(r.ready ? 200 : 503)
          .header("cache-control", "no-store")
          // Always open (probes send no key): its reasons name models, hosts and Redis's memory,
          // which HEALTH_PUBLIC=false keeps for callers with a key (GET /health).
          .send({
            status: r.ready ? "ready" : "not_ready",
            health: r.status,
            ...(config.HEALTH_PUBLIC && { reasons: r.reasons }),
          })
      );
    },
  );

  app.get(
    "/health",
    {
      config: { access: "public" },
      schema: { response: { 200: detailed, 503: { ...detailed, description: "unhealthy (see reasons)" } } },
    },
    async (_req, reply) => {
      const body = await health.detailed();
      return reply
        .code(body.status === "unhealthy" ? 503 : 200)
        .header("cache-control", "no-store")
        .send(body);
    },
  );
};
