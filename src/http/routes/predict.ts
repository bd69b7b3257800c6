import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { TERMINAL_STATUSES, type JobView, type Priority } from "../../contracts/jobs.js";
import { BatchTooLargeError, InvalidInputError, InvalidParameterError } from "../../errors/catalog.js";
import { MAX_PROBLEMS, problemsToMessage, WHOLE_INPUT, type InputProblem } from "../../models/validation.js";
import type { SubmitRequest } from "../../queue/intake.js";
import type { CachedJobView } from "../../queue/view.js";
import { MODEL_INPUT, PATH_PARAMS, RESPONSE_HEADERS } from "../openapi.js";
import { PREFER_HEADER, preferredWaitSeconds } from "../prefer.js";
import { hangUpSignal } from "../hang-up.js";
import type { HttpDeps } from "../types.js";

interface PredictQuery {
  priority?: Priority;
  version?: string;
  timeout_ms?: number;
}

export function links(jobId: string) {
  return { self: `/api/results/${jobId}`, events: `/api/results/${jobId}/events` };
}

/**
 * A job view as clients get it, with its links. A cached answer whose job is past its retention
 * gets none: its record may be gone, and a link must not lead to a 404.
 */
export function present(view: JobView | CachedJobView) {
  if ("jobReadable" in view) {
    const { jobReadable, ...rest } = view;
    return { ...rest, links: jobReadable ? links(view.job_id) : {} };
  }
  return { ...view, cached: view.cached ?? false, links: links(view.job_id) };
}

/**
 * The request's Idempotency-Key. Node joins a header sent twice into "a, b", which would pass
 * for one key that neither copy is: a key sent more than once is refused instead.
 */
function idempotencyKeyOf(req: FastifyRequest): string | undefined {
  const raw = req.raw.rawHeaders;
  let copies = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === "idempotency-key") copies++;
  if (copies > 1)
    throw new InvalidParameterError(
      `headers.idempotency-key must be sent once; it was sent ${copies} times`,
      {
        field: "headers.idempotency-key",
      },
    );
  return req.headers["idempotency-key"] as string | undefined;
}

/** Sends a job view: 200 once terminal, 202 with Location while it is queued or running. */
export function sendJobView(
  reply: FastifyReply,
  view: JobView | CachedJobView,
  waitedSeconds: number,
): FastifyReply {
  if (waitedSeconds > 0) void reply.header("preference-applied", `wait=${waitedSeconds}`);
  const body = present(view);
  if (TERMINAL_STATUSES.has(view.status)) return reply.code(200).send(body);
  return reply.code(202).header("location", links(view.job_id).self).send(body);
}

const jobResponses = {
  200: {
    description: "Finished (or answered from the cache, `cached: true`)",
    headers: { "preference-applied": RESPONSE_HEADERS["preference-applied"] },
    $ref: "JobView#",
  },
  202: {
    description: "Accepted; poll or wait on links.self",
    headers: {
      location: RESPONSE_HEADERS.location,
      "preference-applied": RESPONSE_HEADERS["preference-applied"],
    },
    $ref: "JobView#",
  },
  404: { description: "Error; code one of: model_not_found, version_not_found", $ref: "Error#" },
  422: { description: "Error; code one of: invalid_input, idempotency_key_reused", $ref: "Error#" },
  429: {
    description: "Error; code one of: queue_full, rate_limited (Retry-After says when)",
    $ref: "Error#",
  },
} as const;

export const predictRoutes: FastifyPluginAsync<HttpDeps> = async (
  app,
  { versions, validator, jobs, config, waits },
) => {
  const params = PATH_PARAMS.model;
  const querystring = {
    type: "object",
    properties: {
      priority: { type: "string", enum: ["high", "normal", "low"], default: "normal" },
      version: {
        type: "string",
        pattern: "^[0-9]{1,9}$",
        description:
          "Model version. Default: the newest one the live workers serve (one that failed to load in them is skipped). A version every live worker failed to load is 404 version_not_found.",
      },
      timeout_ms: { type: "integer", minimum: 1, maximum: config.TIMEOUT_MAX_MS },
    },
    additionalProperties: false,
  } as const;
  const headers = {
    type: "object",
    properties: {
      "idempotency-key": { type: "string", minLength: 1, maxLength: 255 },
      prefer: PREFER_HEADER,
    },
  } as const;

  /**
   * What every prediction request shares: the model version, options and deadline, and the
   * seconds it may wait (taking a WAIT_MAX_HELD slot until its response closes when it waits).
   */
  function base(
    req: FastifyRequest<{ Params: { model: string }; Querystring: PredictQuery }>,
    reply: FastifyReply,
  ) {
    const descriptor = versions.resolve(req.params.model, req.query.version);
    return {
      descriptor,
      waitSeconds: waits.take(reply.raw, preferredWaitSeconds(req.headers.prefer, config.WAIT_MAX_SECONDS)),
      request: (input: unknown): SubmitRequest => ({
        model: descriptor.name,
        version: descriptor.version,
        fingerprint: descriptor.fingerprint,
        requestedVersion: req.query.version,
        input,
        priority: req.query.priority ?? "normal",
        requestId: req.id,
        cacheTtlSeconds: descriptor.cacheTtlSeconds,
        maxQueueDepth: descriptor.maxQueueDepth,
        deadline: req.query.timeout_ms === undefined ? undefined : Date.now() + req.query.timeout_ms,
        caller: req.principal?.id,
      }),
    };
  }

  app.post<{ Params: { model: string }; Querystring: PredictQuery; Body: unknown }>(
    "/api/ml/:model",
    {
      schema: {
        summary: "Submit one input",
        description:
          "Body: the model's input (see GET /api/models/{model}). `Prefer: wait=N` holds the request up to N seconds for the result; `Idempotency-Key` makes retries safe; `timeout_ms` ends the job `expired` if no worker starts it in time.",
        params,
        querystring,
        headers,
        response: jobResponses,
      },
      config: { access: "predict", documentedBody: { schema: MODEL_INPUT } },
    },
    async (req, reply) => {
      const { descriptor, waitSeconds, request } = base(req, reply);
      const problems = validator.check(descriptor, req.body);
      if (problems.length > 0) {
        throw new InvalidInputError(
          `invalid input for model "${descriptor.name}": ${problemsToMessage(problems)}`,
          {
            problems,
          },
        );
      }
      const idempotencyKey = idempotencyKeyOf(req);
      const view = await jobs.submit(
        { ...request(req.body), idempotencyKey },
        waitSeconds * 1000,
        // Logged when known (the add has been answered), not when a wait ends.
        (jobId, cached) =>
          req.log.info(
            {
              event: cached ? "cache_hit" : "job_queued",
              job_id: jobId,
              model: descriptor.name,
              version: descriptor.version,
            },
            cached ? "answered from cache" : "job queued",
          ),
        waitSeconds > 0 ? hangUpSignal(reply.raw) : undefined,
      );
      return sendJobView(reply, view, waitSeconds);
    },
  );

  app.post<{ Params: { model: string }; Querystring: PredictQuery; Body: { inputs: unknown[] } }>(
    "/api/ml/:model/batch",
    {
      schema: {
        summary: "Submit many inputs in one call",
        description:
          "Body: `{inputs: [...]}`, each the model's input. `Idempotency-Key` binds the key to the batch's jobs: a retry with the same key and body gets the same jobs.",
        params,
        querystring,
        headers,
        body: {
          type: "object",
          properties: {
            inputs: {
              type: "array",
              minItems: 1,
              description: `At most ${config.BATCH_MAX_ITEMS} (BATCH_MAX_ITEMS); more is 413 batch_too_large`,
              // Checked by the route against the model's own schema, as one input is.
              items: { description: MODEL_INPUT.description },
            },
          },
          required: ["inputs"],
          additionalProperties: false,
        },
        response: {
          200: {
            description: "All finished",
            headers: { "preference-applied": RESPONSE_HEADERS["preference-applied"] },
            $ref: "BatchView#",
          },
          202: {
            description: "Accepted; some still queued or running",
            headers: { "preference-applied": RESPONSE_HEADERS["preference-applied"] },
            $ref: "BatchView#",
          },
          404: jobResponses[404],
          413: { description: "Error; code one of: batch_too_large, payload_too_large", $ref: "Error#" },
          422: { description: "Error; code: invalid_input (names inputs[i].field)", $ref: "Error#" },
          429: jobResponses[429],
        },
      },
      config: { access: "predict" },
    },
    async (req, reply) => {
      const { inputs } = req.body;
      if (inputs.length > config.BATCH_MAX_ITEMS)
        throw new BatchTooLargeError(inputs.length, config.BATCH_MAX_ITEMS);
      const { descriptor, waitSeconds, request } = base(req, reply);
      const problems: InputProblem[] = inputs.flatMap((input, i) =>
        validator.check(descriptor, input).map((p) => ({
          field: p.field === WHOLE_INPUT ? `inputs[${i}]` : `inputs[${i}].${p.field}`,
          message: p.message,
        })),
      );
      if (problems.length > 0) {
        // Up to MAX_PROBLEMS, as for one input: a small batch of bad items must not turn into an
        // answer (and a log line) many times its size.
        const listed = problems.slice(0, MAX_PROBLEMS);
        const more = problems.length - listed.length;
        throw new InvalidInputError(
          `invalid input for model "${descriptor.name}": ${problemsToMessage(listed)}${more > 0 ? `; and ${more} more` : ""}`,
          more > 0 ? { problems: listed, problem_count: problems.length } : { problems },
        );
      }
      const idempotencyKey = idempotencyKeyOf(req);
      const views = await jobs.submitBatch(
        inputs.map(request),
        waitSeconds * 1000,
        idempotencyKey,
        waitSeconds > 0 ? hangUpSignal(reply.raw) : undefined,
      );
      req.log.info({ event: "batch_queued", model: descriptor.name, count: views.length }, "batch queued");
      const done = views.every((v) => TERMINAL_STATUSES.has(v.status));
      if (waitSeconds > 0) void reply.header("preference-applied", `wait=${waitSeconds}`);
      return reply.code(done ? 200 : 202).send({
        model: descriptor.name,
        version: descriptor.version,
        count: views.length,
        status: done ? "completed" : "pending",
        jobs: views.map(present),
      });
    },
  );
};
