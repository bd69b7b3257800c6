import type { FastifyPluginAsync } from "fastify";
import { FeedbackExistsError, InvalidInputError, JobNotCompletedError } from "../../errors/catalog.js";
import { compare } from "../../telemetry/feedback.js";
import { objectResponse, PATH_PARAMS } from "../openapi.js";
import type { HttpDeps } from "../types.js";

/** Largest magnitude a regression truth may have. */
const MAX_FEEDBACK_VALUE = 1e12;

/**
 * `POST /api/results/{job_id}/feedback` with `{label}` (classification, sentiment) or `{value}`
 * (regression): the truth for a completed job, counted once per job and API key into live
 * accuracy (or MAE/RMSE) of the model version that answered.
 */
export const feedbackRoutes: FastifyPluginAsync<HttpDeps> = async (
  app,
  { records, catalog, telemetry, feedback, guard },
) => {
  app.post<{ Params: { jobId: string }; Body: { label?: string; value?: number } }>(
    "/api/results/:jobId/feedback",
    {
      config: { access: "predict" },
      schema: {
        params: PATH_PARAMS.jobId,
        body: {
          type: "object",
          properties: {
            label: { type: "string", minLength: 1, maxLength: 200 },
            // Far beyond any target a model here predicts; keeps Infinity (1e999 in JSON) and
            // absurd values out of the live error sums.
            value: { type: "number", minimum: -MAX_FEEDBACK_VALUE, maximum: MAX_FEEDBACK_VALUE },
          },
          additionalProperties: false,
          minProperties: 1,
          maxProperties: 1,
        },
        response: {
          201: objectResponse(
            "Recorded: what was predicted, the truth, and whether it matched (or the error)",
            {
              job_id: { type: "string" },
              model: { type: "string" },
              version: { type: "string" },
              kind: { type: "string", enum: ["label", "value"] },
            },
          ),
          404: { description: "Error; code: job_not_found", $ref: "Error#" },
          409: { description: "Error; code one of: job_not_completed, feedback_exists", $ref: "Error#" },
          422: { description: "Error; code: invalid_input", $ref: "Error#" },
        },
      },
    },
    async (req, reply) => {
      const view = await records.view(req.params.jobId);
      if (view.status !== "completed")
        throw new JobNotCompletedError(
          `job "${view.job_id}" is ${view.status}; feedback needs a completed job`,
        );
      let labels: readonly string[] | undefined;
      try {
        labels = catalog.resolve(view.model, view.version).labels;
      } catch {
        labels = undefined;
      }
      if (req.body.label !== undefined && labels && !labels.includes(req.body.label))
        throw new InvalidInputError(`label must be one of ${labels.join(", ")}`, { labels });
      const outcome = compare(view.result, req.body);
      if (!outcome)
        throw new InvalidInputError(
          `this model's results take ${typeof (view.result as { value?: unknown })?.value === "number" ? "{value}" : "{label}"} as feedback`,
        );
      // With authentication off every request is one caller's.
      const caller = req.principal?.id ?? "anonymous";
      const first = await guard(() => feedback.claim(view.model, view.job_id, caller, outcome));
      if (!first)
        throw new FeedbackExistsError(
          `feedback for job "${view.job_id}" was already given with this API key (one per job and key)`,
          { job_id: view.job_id },
        );
      telemetry.feedback(
        view.model,
        view.version,
        outcome.kind === "label" ? { correct: outcome.correct } : { error: outcome.error },
      );
      req.log.info(
        { event: "job_feedback", job_id: view.job_id, model: view.model, version: view.version, ...outcome },
        "feedback recorded",
      );
      return reply
        .code(201)
        .send({ job_id: view.job_id, model: view.model, version: view.version, ...outcome });
    },
  );
};
