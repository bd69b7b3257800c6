import type { FastifyPluginAsync } from "fastify";
import { mediaResponse, PATH_PARAMS, RESPONSE_HEADERS } from "../openapi.js";
import { PREFER_HEADER, preferredWaitSeconds } from "../prefer.js";
import { hangUpSignal } from "../hang-up.js";
import type { HttpDeps } from "../types.js";
import { TERMINAL_STATUSES } from "../../contracts/jobs.js";
import { present, sendJobView } from "./predict.js";

const params = PATH_PARAMS.jobId;

export const resultRoutes: FastifyPluginAsync<HttpDeps> = async (
  app,
  { records, config, security, waits },
) => {
  app.get<{ Params: { jobId: string } }>(
    "/api/results/:jobId",
    {
      schema: {
        summary: "Read (or wait for) a job's result",
        params,
        headers: { type: "object", properties: { prefer: PREFER_HEADER } },
        response: {
          200: {
            description: "Finished: completed, failed, canceled or expired",
            headers: { "preference-applied": RESPONSE_HEADERS["preference-applied"] },
            $ref: "JobView#",
          },
          202: {
            description: "Still queued or active",
            headers: {
              location: RESPONSE_HEADERS.location,
              "preference-applied": RESPONSE_HEADERS["preference-applied"],
            },
            $ref: "JobView#",
          },
          404: { description: "Error; code: job_not_found", $ref: "Error#" },
        },
      },
      config: { access: "predict" },
    },
    async (req, reply) => {
      const waitSeconds = waits.take(
        reply.raw,
        preferredWaitSeconds(req.headers.prefer, config.WAIT_MAX_SECONDS),
      );
      const view =
        waitSeconds > 0
          ? await records.waitFor(req.params.jobId, waitSeconds * 1000, { signal: hangUpSignal(reply.raw) })
          : await records.view(req.params.jobId);
      return sendJobView(reply, view, waitSeconds);
    },
  );

  app.delete<{ Params: { jobId: string } }>(
    "/api/results/:jobId",
    {
      schema: {
        summary: "Cancel a job that has not started",
        params,
        response: {
          200: { description: "Canceled", $ref: "JobView#" },
          404: { description: "Error; code: job_not_found", $ref: "Error#" },
          409: { description: "Error; code: job_not_cancelable", $ref: "Error#" },
        },
      },
      config: { access: "predict" },
    },
    async (req, reply) => {
      const view = await records.cancel(req.params.jobId);
      req.log.info({ event: "job_canceled", job_id: view.job_id, model: view.model }, "job canceled");
      // The view a read of the job gives (links, cached), so one parser serves both.
      return sendJobView(reply, view, 0);
    },
  );

  /**
   * Server-sent events: the job's view each time its status changes (queued → active →
   * completed/failed/...), then the stream ends. Comments keep idle proxies from closing it.
   */
  app.get<{ Params: { jobId: string } }>(
    "/api/results/:jobId/events",
    {
      schema: {
        summary: "Server-sent events: the job's view at each status change, until it ends",
        params,
        response: {
          200: mediaResponse(
            "`event: status` with the job view (as JSON) at each status change; ends after a terminal one",
            "text/event-stream",
          ),
          404: { description: "Error; code: job_not_found", $ref: "Error#" },
          429: { description: "Error; code one of: too_many_streams, rate_limited", $ref: "Error#" },
        },
      },
      config: { access: "predict" },
      // A HEAD request would hold a stream that can never write.
      exposeHeadRoute: false,
    },
    async (req, reply) => {
      const jobId = req.params.jobId;
      await records.view(jobId); // 404 / 503 as JSON before the stream starts
      const release = security.streams.acquire();
      // The client going away ends the stream's wait at once; its slot is freed when the
      // stream's work is over, not before.
      let closed = false;
      const hangUp = new AbortController();
      const hungUp = () => {
        closed = true;
        hangUp.abort();
      };
      req.raw.on("close", hungUp);
      // A client gone while its job was read has closed already: no event will say so.
      if (req.raw.destroyed) hungUp();
      reply.hijack();
      const raw = reply.raw;
      // What hooks set (CORS, rate limits) goes out with the stream too.
      for (const [name, value] of Object.entries(reply.getHeaders()))
        if (value !== undefined) raw.setHeader(name, value);
      raw.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache, no-transform",
        connection: "keep-alive",
        "x-accel-buffering": "no",
        "x-request-id": req.id,
      });
      let seq = 0;
      const send = (event: string, data: unknown) => {
        if (!closed) raw.write(`event: ${event}\nid: ${++seq}\ndata: ${JSON.stringify(data)}\n\n`);
      };
      const keepAlive = setInterval(() => !closed && raw.write(": keep-alive\n\n"), 15_000);
      try {
        while (!closed) {
          const view = await records.waitFor(jobId, Math.max(1, config.WAIT_MAX_SECONDS) * 1000, {
            // The view a read of the job gives at that moment, field for field.
            onChange: (v) => send("status", present(v)),
            signal: hangUp.signal,
          });
          // Shutting down ends the stream; the client reconnects to another process.
          if (TERMINAL_STATUSES.has(view.status) || records.shuttingDown) break;
        }
      } catch (err) {
        req.log.warn(
          { event: "stream_interrupted", err: (err as Error).message },
          "event stream interrupted",
        );
        send("error", {
          code: "stream_interrupted",
          message: "the job's status could not be read; reconnect to resume",
        });
      } finally {
        clearInterval(keepAlive);
        release();
        if (!closed) raw.end();
      }
    },
  );
};
