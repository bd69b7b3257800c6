import type { FastifyPluginAsync } from "fastify";
import type { ModelDescriptor } from "../../models/types.js";
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

export const modelRoutes: FastifyPluginAsync<HttpDeps> = async (app, { catalog }) => {
  const describe = (name: string) => {
    const versions = catalog.versions(name);
    const latest = versions[0]!;
    return {
      name,
      latest_version: latest.version,
      description: latest.description,
      task: latest.task,
      input_schema: latest.inputSchema,
      versions: versions.map(describeVersion),
      links: { predict: `/api/ml/${name}` },
    };
  };

  app.get("/api/models", async () => ({ models: catalog.names().map(describe) }));

  app.get<{ Params: { model: string } }>(
    "/api/models/:model",
    { schema: { params: { type: "object", properties: { model: { type: "string", maxLength: 64 } } } } },
    async (req) => describe(req.params.model),
  );
};
