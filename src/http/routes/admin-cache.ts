import type { FastifyPluginAsync } from "fastify";
import { InvalidParameterError } from "../../errors/catalog.js";
import type { HttpDeps } from "../types.js";

interface Body {
  model?: string;
  version?: string;
  input?: unknown;
}

/**
 * Cache invalidation without scanning the keyspace: everything, a model, one version of it, or
 * one input (of the named or latest version).
 */
export const adminCacheRoutes: FastifyPluginAsync<HttpDeps> = async (app, { catalog, jobs }) => {
  app.post<{ Body: Body }>(
    "/api/admin/cache/invalidate",
    {
      config: { access: "admin" },
      schema: {
        body: {
          type: "object",
          properties: {
            model: { type: "string", maxLength: 64 },
            version: { type: "string", pattern: "^[0-9]{1,9}$" },
            input: {},
          },
          additionalProperties: false,
        },
      },
    },
    async (req) => {
      const { model, version, input } = req.body ?? {};
      if (model === undefined) {
        if (version !== undefined || input !== undefined) {
          throw new InvalidParameterError("body.model is required with version or input", {
            field: "body.model",
          });
        }
        await jobs.invalidateCache({ models: catalog.names() });
        return { invalidated: "all", models: catalog.names() };
      }
      const d = catalog.resolve(model, version);
      if (input !== undefined) {
        await jobs.invalidateCache({ models: [d.name], version: d.version, input });
        return { invalidated: "input", model: d.name, version: d.version };
      }
      await jobs.invalidateCache({ models: [d.name], version });
      return version === undefined
        ? { invalidated: "model", model: d.name }
        : { invalidated: "version", model: d.name, version: d.version };
    },
  );
};
