import type { FastifyPluginAsync } from "fastify";
import { preferredWaitSeconds } from "../prefer.js";
import type { HttpDeps } from "../types.js";
import { sendJobView } from "./predict.js";

const params = {
  type: "object",
  properties: { jobId: { type: "string", maxLength: 128 } },
} as const;

export const resultRoutes: FastifyPluginAsync<HttpDeps> = async (app, { jobs, config }) => {
  app.get<{ Params: { jobId: string } }>(
    "/api/results/:jobId",
    { schema: { params } },
    async (req, reply) => {
      const waitSeconds = preferredWaitSeconds(req.headers.prefer, config.WAIT_MAX_SECONDS);
      const view =
        waitSeconds > 0
          ? await jobs.waitFor(req.params.jobId, waitSeconds * 1000)
          : await jobs.view(req.params.jobId);
      return sendJobView(reply, view, waitSeconds);
    },
  );

  app.delete<{ Params: { jobId: string } }>(
    "/api/results/:jobId",
    { schema: { params } },
    async (req, reply) => {
      const view = await jobs.cancel(req.params.jobId);
      req.log.info({ event: "job_canceled", job_id: view.job_id, model: view.model }, "job canceled");
      return reply.code(200).send(view);
    },
  );
};
