import type { FastifyPluginAsync } from "fastify";
import { RedisUnavailableError } from "../../errors/catalog.js";
import { isConnectionError } from "../../redis/connection.js";
import { STATS_WINDOWS, type StatsWindow, type VersionInfo } from "../../telemetry/stats-report.js";
import { objectResponse } from "../openapi.js";
import type { HttpDeps } from "../types.js";

/**
 * `GET /api/stats?window=5m|15m|1h|6h|24h`: fleet-wide totals, throughput, latency percentiles
 * (wait, inference, total), error and cache hit rates, batch sizes, per model and version (with
 * the distribution of predictions and live accuracy next to the training metrics) and a
 * per-minute series for charts. Absent (404) with METRICS_ENABLED off.
 */
export const statsRoutes: FastifyPluginAsync<HttpDeps> = async (app, { stats, catalog }) => {
  if (!stats) return;
  const describe = (model: string, version: string): VersionInfo | undefined => {
    try {
      const d = catalog.resolve(model, version);
      return { task: d.task, labels: d.labels, training: d.training ?? null };
    } catch {
      return undefined;
    }
  };
  app.get<{ Querystring: { window?: StatsWindow } }>(
    "/api/stats",
    {
      config: { access: "admin" },
      schema: {
        querystring: {
          type: "object",
          properties: { window: { type: "string", enum: Object.keys(STATS_WINDOWS) } },
          additionalProperties: false,
        },
        response: {
          200: objectResponse(
            "Fleet-wide totals, throughput, latency percentiles, rates and a per-minute series, per model and version",
          ),
        },
      },
    },
    async (req, reply) => {
      try {
        const report = await stats.report(req.query.window ?? "1h", describe);
        return reply.header("cache-control", "no-store").send(report);
      } catch (err) {
        if (isConnectionError(err)) throw new RedisUnavailableError(err);
        throw err;
      }
    },
  );
};
