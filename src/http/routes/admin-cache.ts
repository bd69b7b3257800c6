import { randomBytes } from "node:crypto";
import type { FastifyPluginAsync } from "fastify";
import { InvalidInputError, InvalidParameterError, ServiceUnavailableError } from "../../errors/catalog.js";
import { problemsToMessage } from "../../models/validation.js";
import { objectResponse } from "../openapi.js";
import type { HttpDeps } from "../types.js";

interface Body {
  model?: string;
  version?: string;
  input?: unknown;
  invalidation_id?: string;
}

/**
 * Cache invalidation without scanning the keyspace: everything, a model, one version of it, or
 * one input (of the named or latest version). Everything is one invalidation per
 * `invalidation_id` (given, or made up and answered): when Redis stops answering half way, the
 * 503 says which models were done, and the same request with that id finishes the rest without
 * invalidating the done ones again.
 */
export const adminCacheRoutes: FastifyPluginAsync<HttpDeps> = async (
  app,
  { catalog, versions, validator, jobs, config },
) => {
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
            invalidation_id: { type: "string", pattern: "^[A-Za-z0-9._:-]{1,64}$" },
          },
          additionalProperties: false,
        },
        response: {
          200: objectResponse("What was invalidated", {
            invalidated: { type: "string", enum: ["all", "model", "version", "input"] },
          }),
          404: { description: "Error; code one of: model_not_found, version_not_found", $ref: "Error#" },
          422: {
            description: "Error; code: invalid_input (an input the model would refuse is in no cache)",
            $ref: "Error#",
          },
        },
      },
    },
    async (req) => {
      const { model, version, input, invalidation_id: given } = req.body ?? {};
      if (model === undefined) {
        if (version !== undefined || input !== undefined) {
          throw new InvalidParameterError("body.model is required with version or input", {
            field: "body.model",
          });
        }
        const models = catalog.names();
        const id = given ?? randomBytes(8).toString("hex");
        const { invalidated, remaining } = await jobs.invalidateEverything(models, id);
        if (remaining.length > 0) {
          throw new ServiceUnavailableError(
            `Redis stopped answering: the cache of ${invalidated.length} of ${models.length} models is ` +
              `invalidated (details.invalidated); send {"invalidation_id": "${id}"} again to finish the others`,
            config.RETRY_AFTER_UNAVAILABLE_SECONDS,
            { invalidation_id: id, invalidated, remaining },
          );
        }
        req.log.info({ event: "cache_invalidated", invalidation_id: id }, "whole cache invalidated");
        return { invalidated: "all", models, invalidation_id: id };
      }
      if (given !== undefined) {
        throw new InvalidParameterError("body.invalidation_id applies to the whole cache only (no model)", {
          field: "body.invalidation_id",
        });
      }
      // Without a version, an input's results are those of the version requests go to.
      const d = version === undefined ? versions.latest(model) : catalog.resolve(model, version);
      if (input !== undefined) {
        // An input the model refuses was never cached: most likely a mistyped field, which would
        // otherwise leave the entry meant untouched behind a 200.
        const problems = validator.check(d, input);
        if (problems.length > 0)
          throw new InvalidInputError(
            `body.input is not an input of model "${d.name}" version ${d.version}: ${problemsToMessage(problems)}`,
            { problems },
          );
        await jobs.invalidateCache({ model: d.name, version: d.version, fingerprint: d.fingerprint, input });
        return { invalidated: "input", model: d.name, version: d.version };
      }
      await jobs.invalidateCache({ model: d.name, version });
      return version === undefined
        ? { invalidated: "model", model: d.name }
        : { invalidated: "version", model: d.name, version: d.version };
    },
  );
};
