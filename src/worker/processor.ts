import { type Job, UnrecoverableError } from "bullmq";
import type { ResultCache } from "../cache/result-cache.js";
import type { JobData, JobResult } from "../contracts/jobs.js";
import { JobError, jobErrors } from "../errors/catalog.js";
import type { ModelCatalog } from "../models/catalog.js";
import { type InputValidator, problemsToMessage } from "../models/validation.js";
import type { Logger } from "../telemetry/logger.js";
import type { WorkerTelemetry } from "../telemetry/telemetry.js";
import type { ModelPool } from "./pool.js";

export interface ProcessorDeps {
  readonly workerId: string;
  readonly catalog: ModelCatalog;
  readonly validator: InputValidator;
  readonly pool: ModelPool;
  readonly logger: Logger;
  readonly onFinished: (ok: boolean) => void;
  /** A model version a job asked for failed to load (the job's attempt fails, retryable). */
  readonly onLoadFailed?: (model: string, version: string, reason: string) => void;
  /** Metrics and stats (absent or no-op with METRICS_ENABLED off). */
  readonly telemetry?: WorkerTelemetry;
  /**
   * Keeps successful results and frees in-flight slots (coalescing), on the connection the
   * BullMQ worker running this processor completes its jobs on.
   */
  readonly cache: ResultCache;
}

export interface Processor {
  /**
   * The BullMQ processor: re-checks the input (a job the worker finds invalid fails at once,
   * without retries), hands it to the model's batcher and returns its row of the output.
   */
  readonly process: (job: Job<JobData, JobResult>) => Promise<JobResult>;
  /**
   * For the BullMQ worker's `completed` event: logs `job_completed` and counts the job, once its
   * completion is stored. One that cannot be stored (Redis lost as the job ends) is neither: its
   * lease runs out and it runs again, and that run is the one logged and counted.
   */
  readonly completed: (job: Job<JobData, JobResult>) => void;
}

export function makeProcessor(deps: ProcessorDeps): Processor {
  /** What to log and count for a job the processor finished, once BullMQ has stored it. */
  const finished = new WeakMap<Job<JobData, JobResult>, () => void>();
  const completed = (job: Job<JobData, JobResult>): void => {
    const announce = finished.get(job);
    finished.delete(job);
    announce?.();
  };
  const process = async (job: Job<JobData, JobResult>): Promise<JobResult> => {
    const startedAt = Date.now();
    const { model, version, input, requestId } = job.data;
    const attempt = job.attemptsMade + 1;
    // Started again without a failure counted: the worker that had it died (or lost Redis).
    const redelivered = (job.attemptsStarted ?? attempt) > attempt;
    // On every line of the job's, so the one that ends it tells the whole story.
    const log = deps.logger.child({
      job_id: job.id,
      model,
      version,
      request_id: requestId,
      attempt,
      ...(redelivered && { redelivered }),
      queue_wait_ms: startedAt - job.timestamp,
    });
    // The deadline is for starting: a retry, or a job a dead worker had started, is past it.
    const firstStart = job.attemptsMade === 0 && !redelivered;
    if (firstStart && job.data.deadline !== undefined && startedAt > job.data.deadline) {
      // Too late to be useful: end it without running the model. Logged as the job's end (code
      // expired); counted apart from failures, as the deadline is the client's choice.
      const expired = jobErrors.expired("the deadline passed before a worker could start the job");
      deps.telemetry?.jobExpired(model, version);
      log.warn({ event: "job_failed", code: expired.code, duration_ms: 0 }, expired.message);
      if (job.data.cache) await deps.cache.release(job.data.cache.inflightKey, job.id!).catch(() => {});
      throw new UnrecoverableError(expired.toReason());
    }
    log.info({ event: "job_started" }, "job started");
    try {
      let descriptor;
      try {
        descriptor = deps.catalog.resolve(model, version);
      } catch {
        // Retried with backoff, not failed at once: during a rolling reload another worker may
        // still serve this version. The last attempt fails the job with version_not_found.
        throw jobErrors.versionNotServed(model, version);
      }
      const problems = deps.validator.check(descriptor, input);
      if (problems.length > 0) throw jobErrors.invalidInput(problemsToMessage(problems));
      let entry;
      try {
        entry = await deps.pool.get(model, version);
      } catch (err) {
        deps.onLoadFailed?.(model, version, (err as Error).message);
        throw jobErrors.modelUnavailable(
          `model ${model}@${version} failed to load: ${(err as Error).message}`,
        );
      }
      const out = await entry.batcher.submit({ input, attempt });
      const doneAt = Date.now();
      const cache = job.data.cache;
      if (cache) {
        // The API keyed the result by the version's files as it read them. A worker that loaded
        // other files under the same version (rewritten in place, and reloaded on one side
        // only) frees the in-flight slot but caches nothing where requests for those files look.
        const sameFiles =
          cache.fingerprint === undefined || cache.fingerprint === entry.model.descriptor.fingerprint;
        // Only successes are cached; a failure to cache costs a later recomputation, nothing else.
        // Not awaited: the store goes out on the connection BullMQ marks this job completed on,
        // just before it does, and Redis runs one connection's commands in order, so whoever
        // sees the job completed finds its result cached; the job need not wait a round trip.
        void deps.cache
          .store(sameFiles ? cache : { ...cache, ttlSeconds: 0 }, job.id!, {
            output: out.output,
            job_id: job.id!,
            created_at: new Date(job.timestamp).toISOString(),
            inference_ms: out.inferenceMs,
            job_retained_until: retainedUntil(job, doneAt),
            finished_at: new Date(doneAt).toISOString(),
            priority: job.data.priority,
            attempts: attempt,
            max_attempts: job.opts.attempts ?? 1,
          })
          .catch((err: Error) =>
            log.warn({ event: "cache_store_failed", err: err.message }, "could not cache the result"),
          );
      }
      deps.onFinished(true);
      finished.set(job, () => {
        deps.telemetry?.jobCompleted(
          descriptor,
          {
            waitMs: startedAt - job.timestamp,
            inferenceMs: out.inferenceMs,
            totalMs: doneAt - job.timestamp,
          },
          out.output,
        );
        log.info(
          {
            event: "job_completed",
            duration_ms: doneAt - startedAt,
            inference_ms: out.inferenceMs,
            batch_size: out.batchSize,
          },
          "job completed",
        );
      });
      return {
        output: out.output,
        inferenceMs: out.inferenceMs,
        batchSize: out.batchSize,
        worker: deps.workerId,
        startedAt,
        finishedAt: doneAt,
        attempt,
      };
    } catch (err) {
      deps.onFinished(false);
      const jobErr =
        err instanceof JobError ? err : jobErrors.inference((err as Error)?.message ?? String(err));
      const final = !jobErr.retryable || attempt >= (job.opts.attempts ?? 1);
      deps.telemetry?.jobFailed(model, version, final);
      log.warn(
        {
          event: final ? "job_failed" : "job_retrying",
          code: jobErr.code,
          duration_ms: Date.now() - startedAt,
        },
        jobErr.message,
      );
      if (final && job.data.cache)
        await deps.cache.release(job.data.cache.inflightKey, job.id!).catch(() => {});
      if (!jobErr.retryable) throw new UnrecoverableError(jobErr.toReason());
      throw new Error(jobErr.toReason(), { cause: err });
    }
  };
  return { process, completed };
}

/**
 * Until when a job completed at `doneAt` can still be read (ISO time): BullMQ removes a completed
 * job once it is older than its `removeOnComplete.age`, counted from when it finished, a moment
 * after `doneAt`. Undefined when its options set no such age.
 */
function retainedUntil(job: Job<JobData, JobResult>, doneAt: number): string | undefined {
  const keep = job.opts.removeOnComplete;
  if (keep === true) return new Date(doneAt).toISOString();
  if (typeof keep !== "object" || !("age" in keep) || keep.age === undefined) return undefined;
  return new Date(doneAt + keep.age * 1000).toISOString();
}
