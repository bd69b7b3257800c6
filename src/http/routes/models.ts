import type { FastifyPluginAsync } from "fastify";
import type { ModelDescriptor } from "../../models/types.js";
import type { HealthReport, ModelHealth } from "../../telemetry/health.js";
import { objectResponse, PATH_PARAMS } from "../openapi.js";
import type { HttpDeps } from "../types.js";

export function describeVersion(d: ModelDescriptor) {
  return {
    version: d.version,
    kind: d.kind,
    description: d.description,
    task: d.task,
    labels: d.labels ?? null,
    input_schema: d.inputSchema,
    batching: { max_batch_size: d.batching.maxBatchSize, max_delay_ms: d.batching.maxDelayMs },
    cache_ttl_seconds: d.cacheTtlSeconds,
    training: d.training ?? null,
  };
}

/**
 * Whether the model is served now, with its queue and recent numbers (from the health evaluation
 * every process shares): `ready` when a live worker serves it and its queue is not paused. Null
 * when Redis cannot be read; the model's description is still answered.
 */
function serving(m: ModelHealth | undefined) {
  return m === undefined ? null : { ready: m.workers > 0 && !m.paused, ...m };
}

export const modelRoutes: FastifyPluginAsync<HttpDeps> = async (app, { catalog, versions, health }) => {
  const describe = (name: string, models: HealthReport["models"]) => {
    // What a request without a version gets: not the newest folder when no live worker serves it.
    const latest = versions.latest(name);
    return {
      name,
      latest_version: latest.version,
      description: latest.description,
      task: latest.task,
      input_schema: latest.inputSchema,
      versions: catalog.versions(name).map((d) => ({
        ...describeVersion(d),
        ...versions.describe(name, d.version),
      })),
      serving: serving(models?.[name]),
      links: { predict: `/api/ml/${name}` },
    };
  };

  const description =
    "`latest_version` is the version a request without one goes to: the newest the live workers serve. Each of `versions` says how many live `workers` serve it (null while none reports) and `load_failed`: the workers that could not load it, and why.";
  app.get(
    "/api/models",
    {
      schema: {
        summary: "Models, their versions and serving state",
        description,
        response: {
          200: objectResponse("The models", { models: { type: "array", items: { $ref: "ModelView#" } } }),
        },
      },
    },
    async () => {
      const { models } = await health.detailed();
      return { models: catalog.names().map((name) => describe(name, models)) };
    },
  );

  app.get<{ Params: { model: string } }>(
    "/api/models/:model",
    {
      schema: {
        summary: "One model, its versions and serving state",
        description,
        params: PATH_PARAMS.model,
        response: {
          200: { description: "The model", $ref: "ModelView#" },
          404: { description: "Error; code: model_not_found", $ref: "Error#" },
        },
      },
    },
    async (req) => {
      catalog.versions(req.params.model); // model_not_found before any read
      return describe(req.params.model, (await health.detailed()).models);
    },
  );
};
