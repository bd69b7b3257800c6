import { randomBytes } from "node:crypto";
import { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import {
  type JobData,
  type JobResult,
  type JobView,
  PRIORITY_LEVELS,
  type Priority,
  TERMINAL_STATUSES,
} from "../contracts/jobs.js";
import { JobError, JobNotCancelableError, JobNotFoundError } from "../errors/catalog.js";
import type { Guard } from "./guard.js";
import { makeJobId, modelKey, parseJobId, queueName } from "./keys.js";
import type { JobWaiter } from "./waiter.js";

export interface JobPolicy {
  readonly attempts: number;
  readonly backoffMs: number;
  readonly backoffJitter: number;
  readonly retentionSeconds: number;
}

export interface SubmitRequest {
  readonly model: string;
  readonly version: string;
  readonly input: unknown;
  readonly priority: Priority;
  readonly requestId: string;
}

/**
 * Jobs as the API sees them: submit, look up, cancel, wait. The only module the HTTP layer
 * uses to reach the queue. Every call is guarded so Redis trouble surfaces as
 * RedisUnavailableError quickly instead of a hanging request.
 */
export class JobService {
  private readonly queues = new Map<string, Queue<JobData, JobResult>>();
  private closing: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly policy: JobPolicy,
    private readonly guard: Guard,
    private readonly waiter: JobWaiter,
  ) {}

  queue(model: string): Queue<JobData, JobResult> {
    let q = this.queues.get(model);
    if (!q) {
      q = new Queue<JobData, JobResult>(queueName(model), { connection: this.redis, prefix: this.prefix });
      q.on("error", () => {});
      this.queues.set(model, q);
    }
    return q;
  }

  /**
   * Queues a job. With `waitMs`, holds until it ends or the time passes; the wake-up is
   * registered before the job exists, so no event about it can be missed.
   */
  async submit(req: SubmitRequest, waitMs = 0): Promise<JobView> {
    // 128 random bits: unique under any concurrency, across any number of API processes.
    const jobId = makeJobId(req.model, randomBytes(16).toString("hex"));
    const sub = waitMs > 0 ? this.waiter.subscribe(req.model, jobId, waitMs) : undefined;
    const data: JobData = {
      model: req.model,
      version: req.version,
      input: req.input,
      priority: req.priority,
      requestId: req.requestId,
    };
    let job;
    try {
      job = await this.guard(() =>
        this.queue(req.model).add("predict", data, {
          jobId,
          priority: PRIORITY_LEVELS[req.priority],
          attempts: this.policy.attempts,
          backoff: { type: "exponential", delay: this.policy.backoffMs, jitter: this.policy.backoffJitter },
          removeOnComplete: { age: this.policy.retentionSeconds },
          removeOnFail: { age: this.policy.retentionSeconds },
        }),
      );
    } catch (err) {
      sub?.cancel();
      throw err;
    }
    const queued = toView(job, "queued");
    if (!sub) return queued;
    await sub.signal;
    return this.waitFor(jobId, waitMs - (Date.now() - job.timestamp), undefined);
  }

  /** The job's current view; JobNotFoundError when unknown or expired. */
  async view(jobId: string): Promise<JobView> {
    const model = parseJobId(jobId)?.model;
    if (model === undefined) throw new JobNotFoundError(jobId);
    return this.guard(async () => {
      const queue = this.queue(model);
      let job = await Job.fromId<JobData, JobResult>(queue, jobId);
      if (!job) {
        const tomb = await this.redis.get(this.canceledKey(model, jobId));
        if (tomb) return JSON.parse(tomb) as JobView;
        throw new JobNotFoundError(jobId);
      }
      // A finished job's record says how it ended: one round trip.
      if (job.finishedOn) return toView(job, finishedState(job));
      const state = await job.getState();
      if (state === "completed" || state === "failed") {
        // It finished between the two reads: read the record again for its result.
        job = (await Job.fromId<JobData, JobResult>(queue, jobId)) ?? job;
        if (job.finishedOn) return toView(job, finishedState(job));
      }
      return toView(job, state);
    });
  }

  /** Cancels a job that has not started; the canceled record is kept for the retention time. */
  async cancel(jobId: string): Promise<JobView> {
    const current = await this.view(jobId);
    if (current.status === "canceled") return current;
    if (current.status !== "queued") throw new JobNotCancelableError(jobId, current.status);
    const model = current.model;
    const canceled: JobView = {
      ...current,
      status: "canceled",
      finished_at: new Date().toISOString(),
      next_attempt_at: undefined,
    };
    const key = this.canceledKey(model, jobId);
    return this.guard(async () => {
      // Tombstone first so a reader never sees "unknown" in between; undone if removal loses
      // the race against a worker taking the job.
      await this.redis.set(key, JSON.stringify(canceled), "EX", this.policy.retentionSeconds);
      try {
        await this.queue(model).remove(jobId);
        const still = await Job.fromId(this.queue(model), jobId);
        if (still) throw new Error("job is locked by a worker");
      } catch {
        await this.redis.del(key);
        const now = await this.view(jobId);
        throw new JobNotCancelableError(jobId, now.status);
      }
      return canceled;
    });
  }

  /**
   * Holds until the job reaches a terminal state or `ms` pass, then returns its view. Subscribes
   * before each state read, so no completion is missed.
   */
  async waitFor(jobId: string, ms: number, initial?: JobView): Promise<JobView> {
    const model = parseJobId(jobId)?.model;
    if (model === undefined) throw new JobNotFoundError(jobId);
    const deadline = Date.now() + ms;
    let view = initial;
    for (;;) {
      const remaining = deadline - Date.now();
      if (view && (TERMINAL_STATUSES.has(view.status) || remaining <= 0)) return view;
      const sub = this.waiter.subscribe(model, jobId, Math.max(0, remaining));
      try {
        view = await this.view(jobId);
      } catch (err) {
        sub.cancel();
        throw err;
      }
      if (TERMINAL_STATUSES.has(view.status) || remaining <= 0) {
        sub.cancel();
        return view;
      }
      await sub.signal;
      view = undefined;
    }
  }

  private canceledKey(model: string, jobId: string): string {
    return modelKey(this.prefix, model, "canceled", jobId);
  }

  close(): Promise<void> {
    this.closing ??= Promise.allSettled([...this.queues.values()].map((q) => q.close())).then(() => {});
    return this.closing;
  }
}

function finishedState(job: Job<JobData, JobResult>): "completed" | "failed" {
  return job.returnvalue !== null && job.returnvalue !== undefined ? "completed" : "failed";
}

function iso(ms: number | undefined): string | undefined {
  return ms ? new Date(ms).toISOString() : undefined;
}

export function toView(job: Job<JobData, JobResult>, state: string): JobView {
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
  };
  switch (state) {
    case "completed": {
      const r = job.returnvalue;
      const finished = job.finishedOn ?? Date.now();
      return {
        ...base,
        status: "completed",
        result: r.output,
        timings: {
          queue_wait_ms: Math.max(0, r.startedAt - job.timestamp),
          inference_ms: round(r.inferenceMs),
          total_ms: Math.max(0, finished - job.timestamp),
        },
        batch_size: r.batchSize,
        finished_at: iso(finished),
      };
    }
    case "failed":
      return {
        ...base,
        status: "failed",
        error: JobError.fromReason(job.failedReason),
        finished_at: iso(job.finishedOn),
      };
    case "active":
      return { ...base, attempts: job.attemptsMade + 1, status: "active" };
    case "delayed":
      return { ...base, status: "queued", next_attempt_at: iso(job.timestamp + (job.delay ?? 0)) };
    default:
      return { ...base, status: "queued" };
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
