import type { Job } from "bullmq";
import type { JobData, JobResult, JobView } from "../contracts/jobs.js";
import { JobError } from "../errors/catalog.js";
import type { CachedResult } from "../cache/result-cache.js";

/** How a finished job's record ended. */
export function finishedState(job: Job<JobData, JobResult>): "completed" | "failed" {
  return job.returnvalue !== null && job.returnvalue !== undefined ? "completed" : "failed";
}

/**
 * Until when a finished job is kept (epoch ms): its retention (`removeOnComplete.age` or
 * `removeOnFail.age`, set when it was added) from when it finished. Undefined while it has not
 * finished, or when its options keep it for good.
 */
export function keptUntil(job: Job<JobData, JobResult>): number | undefined {
  if (!job.finishedOn) return undefined;
  const keep = finishedState(job) === "completed" ? job.opts.removeOnComplete : job.opts.removeOnFail;
  if (keep === true) return job.finishedOn;
  if (typeof keep !== "object" || !("age" in keep) || keep.age === undefined) return undefined;
  return job.finishedOn + keep.age * 1000;
}

function iso(ms: number | undefined): string | undefined {
  return ms ? new Date(ms).toISOString() : undefined;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/**
 * A BullMQ job and its state, as the API reports it. `retryAt`: when a job waiting to retry
 * runs next (epoch ms, from its place in the delayed set); `position`: how many jobs run before
 * a queued one.
 */
export function toView(
  job: Job<JobData, JobResult>,
  state: string,
  retryAt?: number,
  position?: number,
): JobView {
  const d = job.data;
  const base = {
    job_id: job.id!,
    model: d.model,
    version: d.version,
    priority: d.priority,
    created_at: new Date(job.timestamp).toISOString(),
    // attemptsStarted also counts an attempt that ended in a no-retry failure.
    attempts: Math.max(job.attemptsMade, job.attemptsStarted ?? 0),
    max_attempts: job.opts.attempts ?? 1,
    deadline: iso(d.deadline),
  };
  switch (state) {
    case "completed":
      return completedView({ ...base, status: "queued" }, job.returnvalue, job.finishedOn);
    case "failed": {
      const error = JobError.fromReason(job.failedReason);
      const expired = error.code === "expired";
      return {
        ...base,
        // A worker that finds a job past its deadline ends it without running it: BullMQ
        // counts that as an attempt, but the model never ran (as when the API ends it).
        ...(expired ? { attempts: 0 } : {}),
        status: expired ? "expired" : "failed",
        error,
        finished_at: iso(job.finishedOn),
      };
    }
    case "active":
      return { ...base, attempts: job.attemptsMade + 1, status: "active" };
    case "delayed":
      return { ...base, status: "queued", next_attempt_at: iso(retryAt) };
    default:
      return { ...base, status: "queued", position };
  }
}

/**
 * A completed job's view from what was known of it before (its view while queued or running)
 * and its result: all a completion event carries. Reading the finished record gives the same.
 */
export function completedView(before: JobView, r: JobResult, finishedOn?: number): JobView {
  const created = Date.parse(before.created_at);
  const finished = r.finishedAt ?? finishedOn ?? Date.now();
  return {
    ...before,
    status: "completed",
    attempts: Math.max(before.attempts, r.attempt ?? 0),
    result: r.output,
    timings: {
      queue_wait_ms: Math.max(0, r.startedAt - created),
      inference_ms: round(r.inferenceMs),
      total_ms: Math.max(0, finished - created),
    },
    batch_size: r.batchSize,
    finished_at: iso(finished),
    next_attempt_at: undefined,
    position: undefined,
  };
}

/**
 * Whether a completion event's payload says all a view needs. Results from workers of earlier
 * versions lack `finishedAt` and `attempt`: their waiters read the job's record instead.
 */
export function isCompleteResult(value: unknown): value is JobResult {
  const r = value as Partial<JobResult> | null;
  return (
    typeof r === "object" &&
    r !== null &&
    "output" in r &&
    typeof r.startedAt === "number" &&
    typeof r.inferenceMs === "number" &&
    typeof r.batchSize === "number" &&
    typeof r.finishedAt === "number" &&
    typeof r.attempt === "number"
  );
}

/** A cache hit as the service hands it to the HTTP layer. */
export interface CachedJobView extends JobView {
  readonly cached: true;
  /**
   * False once the job that computed the result is past its retention (its record may be gone),
   * so the answer must link to no job. Not sent to clients.
   */
  readonly jobReadable: boolean;
}

/**
 * A cache hit, reported like the job that computed it (its id, priority, attempts and times);
 * its timings are this request's, which waited for no queue and ran no model. The entry may
 * outlive that job (a cache TTL longer than the retention): `retentionSeconds` dates the jobs of
 * entries that do not say until when theirs is kept. `priority` is the request's, for entries
 * of older workers that do not record the job's.
 */
export function cachedView(
  model: string,
  version: string,
  value: CachedResult,
  priority: JobView["priority"],
  startedAt: number,
  retentionSeconds: number,
): CachedJobView {
  const retainedUntil =
    value.job_retained_until !== undefined
      ? Date.parse(value.job_retained_until)
      : Date.parse(value.created_at) + retentionSeconds * 1000;
  return {
    job_id: value.job_id,
    status: "completed",
    model,
    version,
    priority: value.priority ?? priority,
    created_at: value.created_at,
    attempts: value.attempts ?? 0,
    max_attempts: value.max_attempts ?? 0,
    result: value.output,
    cached: true,
    timings: { queue_wait_ms: 0, inference_ms: 0, total_ms: round(performance.now() - startedAt) },
    // When the result was computed, as the job's own view says (entries of older workers do not
    // say: then now).
    finished_at: value.finished_at ?? new Date().toISOString(),
    // NaN (an unreadable date) counts as gone: better no link than a dead one.
    jobReadable: Date.now() < retainedUntil,
  };
}
