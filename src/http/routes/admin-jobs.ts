import type { FastifyBaseLogger, FastifyPluginAsync } from "fastify";
import { JobNotFailedError } from "../../errors/catalog.js";
import { JobNotRetryableError, notRetryable } from "../../telemetry/queues.js";
import { objectResponse, PATH_PARAMS, RESPONSE_HEADERS } from "../openapi.js";
import type { HttpDeps } from "../types.js";

/**
 * Queues for operators: list failed jobs with their error, put one or all of them back in their
 * queues, remove failed jobs, pause and resume a model's queue.
 */
/** The failed-jobs routes' query: one model (or all), at most `limit` jobs per model. */
function failedJobsQuery(maxLimit: number, extra: Record<string, object> = {}) {
  return {
    type: "object",
    properties: {
      model: { type: "string", maxLength: 64 },
      limit: { type: "integer", minimum: 1, maximum: maxLimit },
      ...extra,
    },
    additionalProperties: false,
  } as const;
}

/** A count of jobs, in all (`total`) and per model. */
function perModelCount(description: string, total: string) {
  return {
    description,
    type: "object",
    properties: {
      [total]: { type: "integer" },
      models: { type: "object", additionalProperties: { type: "integer" } },
    },
  } as const;
}

const MODEL_NOT_FOUND = { description: "Error; code: model_not_found", $ref: "Error#" } as const;

const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

export const adminJobRoutes: FastifyPluginAsync<HttpDeps> = async (
  app,
  { queues, records, catalog, guard },
) => {
  /** The models a route acts on: the one named (404 model_not_found if not served), or all. */
  const modelsOf = (model: string | undefined): string[] => {
    if (model === undefined) return catalog.names();
    catalog.versions(model);
    return [model];
  };

  app.get<{ Querystring: { model?: string; limit?: number } }>(
    "/api/admin/jobs/failed",
    {
      config: { access: "admin" },
      schema: {
        querystring: failedJobsQuery(500),
        response: {
          200: objectResponse("Failed jobs, newest first, with their error", {
            jobs: { type: "array", items: { type: "object", additionalProperties: true } },
          }),
          404: MODEL_NOT_FOUND,
        },
      },
    },
    async (req) => {
      const models = modelsOf(req.query.model);
      return { jobs: await guard(() => queues.failed(models, req.query.limit ?? 50)) };
    },
  );

  app.delete<{ Querystring: { model?: string; older_than_seconds?: number; limit?: number } }>(
    "/api/admin/jobs/failed",
    {
      config: { access: "admin" },
      schema: {
        querystring: failedJobsQuery(100_000, {
          older_than_seconds: { type: "integer", minimum: 0, maximum: 365 * 24 * 3600 },
        }),
        response: {
          200: perModelCount("Failed jobs removed: in all, and per model", "removed"),
          404: MODEL_NOT_FOUND,
        },
      },
    },
    async (req) => {
      const { older_than_seconds: olderThan = 0, limit = 10_000 } = req.query;
      const models = modelsOf(req.query.model);
      const removed = await guard(() => queues.cleanFailed(models, olderThan, limit));
      const total = sum(removed);
      req.log.info(
        { event: "failed_jobs_removed", removed: total, models: removed, older_than_seconds: olderThan },
        `${total} failed job(s) removed`,
      );
      return { removed: total, models: removed };
    },
  );

  app.post<{ Querystring: { model?: string; limit?: number } }>(
    "/api/admin/jobs/failed/retry",
    {
      config: { access: "admin" },
      schema: {
        querystring: failedJobsQuery(10_000),
        response: {
          200: perModelCount(
            "Failed jobs put back in their queues, with fresh attempts: in all, and per model",
            "retried",
          ),
          404: MODEL_NOT_FOUND,
        },
      },
    },
    async (req) => {
      const models = modelsOf(req.query.model);
      const retried = await guard(() => queues.retryFailed(models, req.query.limit ?? 1000));
      const total = sum(retried);
      req.log.info(
        { event: "failed_jobs_retried", retried: total, models: retried, by: "admin" },
        `${total} failed job(s) queued again`,
      );
      return { retried: total, models: retried };
    },
  );

  const pausing = (paused: boolean) => async (req: { params: { model: string }; log: FastifyBaseLogger }) => {
    const { model } = req.params;
    catalog.versions(model); // model_not_found for a model not served
    await guard(() => queues.setPaused(model, paused));
    req.log.info(
      { event: paused ? "queue_paused" : "queue_resumed", model },
      `queue of ${model} ${paused ? "paused" : "resumed"}`,
    );
    return { model, paused };
  };
  const pauseSchema = {
    params: PATH_PARAMS.model,
    response: {
      200: {
        description: "The queue's state now (idempotent)",
        type: "object",
        properties: { model: { type: "string" }, paused: { type: "boolean" } },
      },
      404: MODEL_NOT_FOUND,
    },
  } as const;
  app.post<{ Params: { model: string } }>(
    "/api/admin/models/:model/pause",
    { config: { access: "admin" }, schema: pauseSchema },
    pausing(true),
  );
  app.post<{ Params: { model: string } }>(
    "/api/admin/models/:model/resume",
    { config: { access: "admin" }, schema: pauseSchema },
    pausing(false),
  );

  app.post<{ Params: { jobId: string } }>(
    "/api/admin/jobs/:jobId/retry",
    {
      config: { access: "admin" },
      schema: {
        params: PATH_PARAMS.jobId,
        response: {
          202: {
            ...objectResponse("Queued again; Location leads to its result", {
              job_id: { type: "string" },
              status: { type: "string" },
            }),
            headers: { location: RESPONSE_HEADERS.location },
          },
          404: { description: "Error; code: job_not_found", $ref: "Error#" },
          409: { description: "Error; code: job_not_failed", $ref: "Error#" },
        },
      },
    },
    async (req, reply) => {
      const id = req.params.jobId;
      const done = await guard(async () => {
        const retried = await queues.retry(id, catalog.names());
        if (retried) return retried;
        // No job in a queue to put back. A job the API ended before it started (canceled, or
        // past its deadline) still has its result for a while: not failed, rather than unknown.
        throw notRetryable(id, (await records.view(id)).status); // JobNotFoundError when unknown
      }).catch((err: unknown) => {
        if (err instanceof JobNotRetryableError) throw new JobNotFailedError(err.message, { job_id: id });
        throw err;
      });
      req.log.info(
        { event: "job_retried", job_id: id, model: done.model, by: "admin" },
        "failed job queued again",
      );
      return reply.code(202).header("location", `/api/results/${id}`).send({ job_id: id, status: "queued" });
    },
  );
};
