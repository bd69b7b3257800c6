import { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { type JobData, type JobResult, PRIORITY_LEVELS } from "../contracts/jobs.js";
import { JobError } from "../errors/catalog.js";
import { modelKey, parseJobId, queueName } from "../queue/keys.js";

export interface QueueReading {
  readonly model: string;
  /** Jobs waiting to start (BullMQ wait + prioritized + paused). */
  readonly waiting: number;
  readonly active: number;
  /** Jobs waiting out a retry backoff (BullMQ delayed). */
  readonly retrying: number;
  /** Failed jobs still retained. */
  readonly failed: number;
  /** Age of the oldest job waiting to start; 0 when none waits. */
  readonly oldest_waiting_age_seconds: number;
  /** Paused by an operator: no worker takes its jobs until it is resumed. */
  readonly paused: boolean;
}

export interface FailedJob {
  readonly job_id: string;
  readonly model: string;
  readonly version: string;
  readonly request_id: string;
  readonly error: { readonly code: string; readonly message: string };
  readonly attempts: number;
  readonly created_at: string;
  readonly failed_at: string | null;
}

export class JobNotRetryableError extends Error {}

/**
 * Why a job that is not failed, or that failed by its deadline ("expired"), stays where it is.
 * `status` is the API's (see toView) or a BullMQ state, told as the API would name it.
 */
export function notRetryable(jobId: string, status: string): JobNotRetryableError {
  if (status === "expired")
    return new JobNotRetryableError(
      `job "${jobId}" expired (its deadline passed before it started): a retry would expire at once`,
    );
  // BullMQ's waiting, prioritized and delayed (waiting to retry) are all "queued" to clients.
  const told = ["active", "completed", "canceled"].includes(status) ? status : "queued";
  return new JobNotRetryableError(`job "${jobId}" is ${told}, not failed`);
}

const PRIORITIES = Object.values(PRIORITY_LEVELS);

/**
 * Read-only views of the model queues for health, /metrics and the dashboard, plus the retry
 * of failed jobs. Counts come from BullMQ's keys in one pipeline per model (one hash tag, so
 * one Redis Cluster slot each).
 */
export class QueueInspector {
  private readonly queues = new Map<string, Queue<JobData, JobResult>>();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private queue(model: string): Queue<JobData, JobResult> {
    let q = this.queues.get(model);
    if (!q) {
      q = new Queue<JobData, JobResult>(queueName(model), { connection: this.redis, prefix: this.prefix });
      q.on("error", () => {});
      this.queues.set(model, q);
    }
    return q;
  }

  async read(models: readonly string[]): Promise<QueueReading[]> {
    return Promise.all(models.map((m) => this.readOne(m)));
  }

  private async readOne(model: string): Promise<QueueReading> {
    const k = (type: string) => modelKey(this.prefix, model, type);
    const p = this.redis
      .pipeline()
      .llen(k("wait"))
      .zcard(k("prioritized"))
      .llen(k("paused"))
      .llen(k("active"))
      .zcard(k("delayed"))
      .zcard(k("failed"))
      .hexists(k("meta"), "paused")
      // Oldest candidates: the tail of the wait and paused lists, and the first job of each
      // priority level (scores are priority * 2^32 + arrival counter).
      .lindex(k("wait"), -1)
      .lindex(k("paused"), -1);
    for (const prio of PRIORITIES)
      p.zrangebyscore(k("prioritized"), prio * 2 ** 32, (prio + 1) * 2 ** 32 - 1, "LIMIT", 0, 1);
    const res = (await p.exec()) ?? [];
    const values = res.map(([err, v]) => {
      if (err) throw err;
      return v;
    });
    const num = (i: number) => Number(values[i] ?? 0);
    const candidates = [values[7], values[8], ...values.slice(9).map((v) => (v as string[])[0])].filter(
      (id): id is string => typeof id === "string",
    );
    let oldest = 0;
    if (candidates.length > 0) {
      const tp = this.redis.pipeline();
      for (const id of candidates) tp.hget(k(id), "timestamp");
      const stamps = ((await tp.exec()) ?? []).map(([, v]) => Number(v)).filter((t) => t > 0);
      if (stamps.length > 0) oldest = Math.max(0, (Date.now() - Math.min(...stamps)) / 1000);
    }
    return {
      model,
      waiting: num(0) + num(1) + num(2),
      active: num(3),
      retrying: num(4),
      failed: num(5),
      oldest_waiting_age_seconds: Math.round(oldest * 1000) / 1000,
      paused: num(6) === 1,
    };
  }

  /** The most recent failed jobs across models, newest first. */
  async failed(models: readonly string[], limit: number): Promise<FailedJob[]> {
    const lists = await Promise.all(models.map((m) => this.queue(m).getFailed(0, limit - 1)));
    return lists
      .flat()
      .filter((j): j is Job<JobData, JobResult> => Boolean(j?.id))
      .sort((a, b) => (b.finishedOn ?? 0) - (a.finishedOn ?? 0))
      .slice(0, limit)
      .map((j) => ({
        job_id: j.id!,
        model: j.data.model,
        version: j.data.version,
        request_id: j.data.requestId,
        error: JobError.fromReason(j.failedReason),
        attempts: j.attemptsMade,
        created_at: new Date(j.timestamp).toISOString(),
        failed_at: j.finishedOn ? new Date(j.finishedOn).toISOString() : null,
      }));
  }

  /**
   * Puts a failed job back in its queue with a fresh set of attempts. Undefined when the job
   * is unknown, or its id names a model not in `models` (the job id comes from a request: a
   * queue opened and kept for any name in it would grow memory without bound);
   * JobNotRetryableError when it is not failed, or expired (ended by its deadline).
   */
  async retry(
    jobId: string,
    models: readonly string[],
  ): Promise<{ job_id: string; model: string } | undefined> {
    const model = parseJobId(jobId)?.model;
    if (model === undefined || !models.includes(model)) return undefined;
    const job = await Job.fromId<JobData, JobResult>(this.queue(model), jobId);
    if (!job) return undefined;
    const state = await job.getState();
    if (state !== "failed") throw notRetryable(jobId, state);
    if (expired(job)) throw notRetryable(jobId, "expired");
    await job.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true });
    return { job_id: jobId, model };
  }

  /**
   * Puts back the most recent failed jobs of the given models, at most `limit` per model, each
   * as `retry` does (expired ones stay). A job that stopped being failed meanwhile (retried, removed) is skipped.
   * The number put back, per model.
   */
  async retryFailed(models: readonly string[], limit: number): Promise<Record<string, number>> {
    const counts = await Promise.all(
      models.map(async (m) => {
        // An expired job would expire again at once: its deadline stays with it.
        const jobs = (await this.queue(m).getFailed(0, limit - 1)).filter((j) => j && !expired(j));
        const done = await Promise.allSettled(
          jobs.map((j) => j.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true })),
        );
        return done.filter((d) => d.status === "fulfilled").length;
      }),
    );
    return Object.fromEntries(models.map((m, i) => [m, counts[i] ?? 0]));
  }

  /**
   * Pauses (or resumes) a model's queue for every worker: jobs are still accepted and queued, up
   * to the queue's cap, but none starts until it is resumed; jobs already running finish.
   * Idempotent.
   */
  async setPaused(model: string, paused: boolean): Promise<void> {
    const q = this.queue(model);
    await (paused ? q.pause() : q.resume());
  }

  /**
   * Removes failed jobs of the given models that failed at least `olderThanSeconds` ago, at most
   * `limit` per model. The number removed, per model.
   */
  async cleanFailed(
    models: readonly string[],
    olderThanSeconds: number,
    limit: number,
  ): Promise<Record<string, number>> {
    const removed = await Promise.all(
      models.map((m) => this.queue(m).clean(olderThanSeconds * 1000, limit, "failed")),
    );
    return Object.fromEntries(models.map((m, i) => [m, removed[i]?.length ?? 0]));
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
  }
}

/** Whether a failed job ended by its deadline, without running (the API reports it `expired`). */
function expired(job: Job<JobData, JobResult>): boolean {
  return JobError.fromReason(job.failedReason).code === "expired";
}
