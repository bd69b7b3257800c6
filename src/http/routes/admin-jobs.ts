import type { FastifyPluginAsync } from "fastify";
import { JobNotFailedError, JobNotFoundError } from "../../errors/catalog.js";
import { JobNotRetryableError } from "../../telemetry/queues.js";
import type { HttpDeps } from "../types.js";

/** Failed jobs for operators: list them with their error, put one back in its queue. */
export const adminJobRoutes: FastifyPluginAsync<HttpDeps> = async (app, { queues, catalog, guard }) => {
  app.get<{ Querystring: { limit?: number } }>(
    "/api/admin/jobs/failed",
    {
      config: { access: "admin" },
      schema: {
        querystring: {
          type: "object",
          properties: { limit: { type: "integer", minimum: 1, maximum: 500 } },
          additionalProperties: false,
        },
      },
    },
    async (req) => ({ jobs: await guard(() => queues.failed(catalog.names(), req.query.limit ?? 50)) }),
  );

  app.post<{ Params: { id: string } }>(
    "/api/admin/jobs/:id/retry",
    {
      config: { access: "admin" },
      schema: { params: { type: "object", properties: { id: { type: "string", maxLength: 128 } } } },
    },
    async (req, reply) => {
      const id = req.params.id;
      const done = await guard(() => queues.retry(id, catalog.names())).catch((err: unknown) => {
        if (err instanceof JobNotRetryableError) throw new JobNotFailedError(err.message, { job_id: id });
        throw err;
      });
      if (!done) throw new JobNotFoundError(id);
      req.log.info(
        { event: "job_retried", job_id: id, model: done.model, by: "admin" },
        "failed job queued again",
      );
      return reply.code(202).header("location", `/api/results/${id}`).send({ job_id: id, status: "queued" });
    },
  );
};
