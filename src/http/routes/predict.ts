import type { FastifyPluginAsync, FastifyReply } from "fastify";
import { TERMINAL_STATUSES, type JobView, type Priority } from "../../contracts/jobs.js";
import { InvalidInputError } from "../../errors/catalog.js";
import { problemsToMessage } from "../../models/validation.js";
import { preferredWaitSeconds } from "../prefer.js";
import type { HttpDeps } from "../types.js";

interface PredictQuery {
  priority?: Priority;
  version?: string;
}

/** Sends a job view: 200 once terminal, 202 with Location while it is queued or running. */
export function sendJobView(reply: FastifyReply, view: JobView, waitedSeconds: number): FastifyReply {
  const links = { self: `/api/results/${view.job_id}` };
  if (waitedSeconds > 0) void reply.header("preference-applied", `wait=${waitedSeconds}`);
  if (TERMINAL_STATUSES.has(view.status)) return reply.code(200).send({ ...view, cached: false, links });
  return reply
    .code(202)
    .header("location", links.self)
    .send({ ...view, links });
}

export const predictRoutes: FastifyPluginAsync<HttpDeps> = async (
  app,
  { catalog, validator, jobs, config },
) => {
  app.post<{ Params: { model: string }; Querystring: PredictQuery; Body: unknown }>(
    "/api/ml/:model",
    {
      schema: {
        params: { type: "object", properties: { model: { type: "string", maxLength: 64 } } },
        querystring: {
          type: "object",
          properties: {
            priority: { type: "string", enum: ["high", "normal", "low"] },
            version: { type: "string", pattern: "^[0-9]{1,9}$" },
          },
          additionalProperties: false,
        },
      },
    },
    async (req, reply) => {
      const descriptor = catalog.resolve(req.params.model, req.query.version);
      const problems = validator.check(descriptor, req.body);
      if (problems.length > 0) {
        throw new InvalidInputError(
          `invalid input for model "${descriptor.name}": ${problemsToMessage(problems)}`,
          {
            problems,
          },
        );
      }
      const waitSeconds = preferredWaitSeconds(req.headers.prefer, config.WAIT_MAX_SECONDS);
      let view = await jobs.submit({
        model: descriptor.name,
        version: descriptor.version,
        input: req.body,
        priority: req.query.priority ?? "normal",
        requestId: req.id,
      });
      req.log.info(
        { event: "job_queued", job_id: view.job_id, model: view.model, version: view.version },
        "job queued",
      );
      if (waitSeconds > 0) view = await jobs.waitFor(view.job_id, waitSeconds * 1000, view);
      return sendJobView(reply, view, waitSeconds);
    },
  );
};
