import { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { joinedKey, type ResultCache } from "../cache/result-cache.js";
import { type JobData, type JobResult, type JobView, TERMINAL_STATUSES } from "../contracts/jobs.js";
import { JobNotCancelableError, JobNotFoundError } from "../errors/catalog.js";
import { whenAborted } from "../lifecycle/aborted.js";
import type { Guard } from "./guard.js";
import { modelKey, parseJobId, queueName } from "./keys.js";
import { completedView, finishedState, keptUntil, toView } from "./view.js";
import type { JobWaiter } from "./waiter.js";

/**
 * Takes a job that no worker has taken out of the worker's reach, atomically: from the waiting
 * lists it is in (a job waiting to retry sits in `delayed`, and has run: it stays), unless other
 * requests share it. Writes the tombstone that reports it from then on and lets the record
 * expire, should its removal (next) never come.
 * KEYS: prioritized, wait, paused, the job's hash, tombstone, joined marker.
 * ARGV: job id, tombstone JSON, retention (s), whether sharing forbids it ("1"/"0").
 */
const WITHDRAW = `
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[6]) == 1 then return 'shared' end
local taken = redis.call('ZREM', KEYS[1], ARGV[1]) + redis.call('LREM', KEYS[2], 0, ARGV[1])
  + redis.call('LREM', KEYS[3], 0, ARGV[1])
if taken == 0 then return 'taken' end
redis.call('SET', KEYS[5], ARGV[2], 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[4], ARGV[3])
return 'withdrawn'
`;

type WithScripts = Redis & {
  inferlineWithdraw(...args: (string | number)[]): Promise<"shared" | "taken" | "withdrawn">;
};

export interface JobRecordsDeps {
  readonly redis: Redis;
  readonly prefix: string;
  /** How long a finished or ended job's record is kept (s). */
  readonly retentionSeconds: number;
  /** How long a job that ended failed is kept (s): a dead letter outlives a result. */
  readonly failedRetentionSeconds: number;
  readonly guard: Guard;
  readonly waiter: JobWaiter;
  /** Frees the in-flight slot of a job ended before it ran. */
  readonly cache: ResultCache;
  /**
   * Whether `model` is one this process serves (or served since it started): a job id naming
   * any other model is unknown without a look in Redis, so a guessed name never gets a queue
   * object, nor an event reader (a connection of its own), that would stay for good.
   */
  readonly serves: (model: string) => boolean;
  /** Called once per job this process ended before it ran (canceled, or expired). */
  readonly onEndedUnstarted?: (model: string, version: string, status: "canceled" | "expired") => void;
}

/**
 * Jobs once they exist: each model's queue, a job's view (from its record, or the tombstone of
 * one ended unstarted), cancelation, and waiting for the end. Every Redis call is guarded, so
 * Redis trouble surfaces as RedisUnavailableError quickly instead of a hanging request.
 */
export class JobRecords {
  private readonly queues = new Map<string, Queue<JobData, JobResult>>();
  private closing: Promise<void> | undefined;

  private readonly redis: WithScripts;

  constructor(private readonly deps: JobRecordsDeps) {
    this.redis = deps.redis as WithScripts;
    if (typeof this.redis.inferlineWithdraw !== "function")
      deps.redis.defineCommand("inferlineWithdraw", { numberOfKeys: 6, lua: WITHDRAW });
  }

  queue(model: string): Queue<JobData, JobResult> {
    let q = this.queues.get(model);
    if (!q) {
      q = new Queue<JobData, JobResult>(queueName(model), {
        connection: this.deps.redis,
        prefix: this.deps.prefix,
      });
      q.on("error", () => {});
      this.queues.set(model, q);
    }
    return q;
  }

  /** The model of a job id, when the id is well formed and names a model this process serves. */
  private modelOf(jobId: string): string {
    const model = parseJobId(jobId)?.model;
    if (model === undefined || !this.deps.serves(model)) throw new JobNotFoundError(jobId);
    return model;
  }

  /** The job's current view; JobNotFoundError when unknown or expired from retention. */
  async view(jobId: string): Promise<JobView> {
    const model = this.modelOf(jobId);
    return this.deps.guard(async () => {
      const queue = this.queue(model);
      let job = await Job.fromId<JobData, JobResult>(queue, jobId);
      if (!job) {
        const tomb = await this.deps.redis.get(this.tombstoneKey(model, jobId));
        if (tomb) return JSON.parse(tomb) as JobView;
        throw new JobNotFoundError(jobId);
      }
      // A finished job's record says how it ended: one round trip.
      if (job.finishedOn) return this.finishedView(queue, job);
      const state = await job.getState();
      if (state === "completed" || state === "failed") {
        // It finished between the two reads: read the record again for its result.
        job = (await Job.fromId<JobData, JobResult>(queue, jobId)) ?? job;
        if (job.finishedOn) return this.finishedView(queue, job);
      }
      if (state === "unknown") {
        // In no list: withdrawn (canceled or expired) and its removal still to come.
        const tomb = await this.deps.redis.get(this.tombstoneKey(model, jobId));
        if (tomb) return JSON.parse(tomb) as JobView;
      }
      // Scores in the delayed set are the time it is due, times 4096 (BullMQ's getDelayedScore).
      const score = state === "delayed" ? await this.deps.redis.zscore(queue.keys.delayed!, jobId) : null;
      const position = await this.position(queue, jobId, state);
      const view = toView(
        job,
        state,
        score === null ? undefined : Math.floor(Number(score) / 0x1000),
        position,
      );
      // The deadline is for starting: a job that has run (now waiting to retry) is past it.
      const unstarted = view.status === "queued" && view.attempts === 0;
      if (unstarted && job.data.deadline !== undefined && job.data.deadline < Date.now()) {
        return this.endUnstarted(view, "expired", job.data, {
          code: "expired",
          message: "the deadline passed before a worker could start the job",
        }).catch(() => view);
      }
      return view;
    });
  }

  /**
   * A finished job's view; past its retention it is gone (JobNotFoundError), as BullMQ removes
   * such a job only when a later one of its queue finishes, and the sweep may not have come by
   * yet. Removed here, so that an Idempotency-Key replay queues its job afresh.
   */
  private async finishedView(
    queue: Queue<JobData, JobResult>,
    job: Job<JobData, JobResult>,
  ): Promise<JobView> {
    const until = keptUntil(job);
    if (until !== undefined && until <= Date.now()) {
      await queue.remove(job.id!).catch(() => {});
      throw new JobNotFoundError(job.id!);
    }
    return toView(job, finishedState(job));
  }

  /**
   * Removes the finished jobs of `models` past the retention (at most `limit` of each model and
   * outcome per call). BullMQ removes them only as later jobs of their queue finish: a queue
   * that goes quiet would keep its last jobs, inputs and results, for good. The number removed.
   */
  async sweep(models: readonly string[], limit = 1000): Promise<number> {
    const { retentionSeconds, failedRetentionSeconds } = this.deps;
    const graceMs = { completed: retentionSeconds * 1000, failed: failedRetentionSeconds * 1000 };
    const removed = await this.deps.guard(() =>
      Promise.all(
        models.flatMap((m) =>
          (["completed", "failed"] as const).map((type) => this.queue(m).clean(graceMs[type], limit, type)),
        ),
      ),
    );
    return removed.reduce((n, ids) => n + ids.length, 0);
  }

  /**
   * Sweeps the finished jobs of the models `models()` names every `everyMs` (see `sweep`), until
   * `close`. A sweep that fails (Redis away) is simply tried again at the next one.
   */
  startSweeping(models: () => readonly string[], everyMs: number): void {
    if (this.sweeper) return;
    let running = false;
    this.sweeper = setInterval(() => {
      if (running) return;
      running = true;
      void this.sweep(models())
        .catch(() => {})
        .finally(() => (running = false));
    }, everyMs);
    this.sweeper.unref();
  }

  private sweeper: NodeJS.Timeout | undefined;

  /**
   * How many jobs run before a queued one: workers take the wait list first (from its right
   * end), then the prioritized set in score order (priority, then arrival). Undefined for other
   * states, or when the job moved on between the reads.
   */
  private async position(
    queue: Queue<JobData, JobResult>,
    jobId: string,
    state: string,
  ): Promise<number | undefined> {
    const keys = queue.keys;
    if (state === "prioritized" && keys.prioritized && keys.wait) {
      const replies = await this.deps.redis.pipeline().zrank(keys.prioritized, jobId).llen(keys.wait).exec();
      const [rank, waiting] = (replies ?? []).map(([err, value]) => (err ? null : value));
      return typeof rank === "number" && typeof waiting === "number" ? waiting + rank : undefined;
    }
    if (state === "waiting" && keys.wait) {
      const replies = await this.deps.redis.pipeline().lpos(keys.wait, jobId).llen(keys.wait).exec();
      const [index, length] = (replies ?? []).map(([err, value]) => (err ? null : value));
      return typeof index === "number" && typeof length === "number" ? length - 1 - index : undefined;
    }
    return undefined;
  }

  /**
   * Cancels a job that has not started and that no other request shares (joined); the canceled
   * record is kept for the retention time.
   */
  async cancel(jobId: string): Promise<JobView> {
    const current = await this.view(jobId);
    if (current.status === "canceled") return current;
    if (current.status !== "queued") throw new JobNotCancelableError(jobId, current.status);
    if (current.attempts > 0)
      throw new JobNotCancelableError(jobId, current.status, "it has run and waits to retry");
    const job = await this.deps.guard(() => Job.fromId<JobData, JobResult>(this.queue(current.model), jobId));
    return this.deps.guard(() => this.endUnstarted(current, "canceled", job?.data));
  }

  /**
   * Ends a queued job without running it (canceled, or expired past its deadline): withdrawn
   * from the waiting lists and tombstoned in one step (WITHDRAW), so a worker either has it
   * already or never gets it, then removed. A job a worker took first is left to run: a
   * cancelation is refused with its state now, an expiry answers that state.
   */
  private async endUnstarted(
    current: JobView,
    status: "canceled" | "expired",
    data: JobData | undefined,
    error?: { code: string; message: string },
  ): Promise<JobView> {
    const { retentionSeconds, cache, prefix } = this.deps;
    const { model, job_id: jobId } = current;
    const ended: JobView = {
      ...current,
      status,
      error,
      finished_at: new Date().toISOString(),
      next_attempt_at: undefined,
      position: undefined,
    };
    const queue = this.queue(model);
    const outcome = await this.redis.inferlineWithdraw(
      queue.keys.prioritized!,
      queue.keys.wait!,
      queue.keys.paused!,
      queue.toKey(jobId),
      this.tombstoneKey(model, jobId),
      joinedKey(prefix, model, jobId),
      jobId,
      JSON.stringify(ended),
      retentionSeconds,
      status === "canceled" ? "1" : "0",
    );
    if (outcome !== "withdrawn") {
      const now = await this.view(jobId);
      if (status !== "canceled") return now;
      if (outcome === "shared")
        throw new JobNotCancelableError(jobId, now.status, "other requests for the same input share it");
      throw new JobNotCancelableError(jobId, now.status);
    }
    this.deps.onEndedUnstarted?.(model, current.version, status);
    // Out of every list, it can only be removed: the record goes, waiters hear "removed".
    await queue.remove(jobId).catch(() => {});
    if (data?.cache) await cache.release(data.cache.inflightKey, jobId).catch(() => {});
    return ended;
  }

  /**
   * Holds until the job reaches a terminal state or `ms` pass, then returns its view. Subscribes
   * before each state read, so no completion is missed; a queued job's deadline ends the wait,
   * and so does the process shutting down.
   */
  async waitFor(
    jobId: string,
    ms: number,
    opts: { onChange?: (v: JobView) => void; signal?: AbortSignal } = {},
  ): Promise<JobView> {
    // An abort (the client went away) ends the wait at once, with the last view read.
    const { signal } = opts;
    const abort = signal ? whenAborted(signal) : undefined;
    try {
      return await this.waitLoop(jobId, ms, opts, abort?.promise);
    } finally {
      abort?.dispose();
    }
  }

  /** waitFor's wait; `aborted` resolves once the client has gone away. */
  private async waitLoop(
    jobId: string,
    ms: number,
    opts: { onChange?: (v: JobView) => void; signal?: AbortSignal },
    aborted: Promise<"aborted"> | undefined,
  ): Promise<JobView> {
    const model = this.modelOf(jobId);
    const end = Date.now() + ms;
    let last: string | undefined;
    const { signal } = opts;
    // The deadline of the job as last read, while it waits unstarted: once it passes, the next
    // read ends the job expired, so the wait reads it then rather than at the next recheck.
    let due: number | undefined;
    for (;;) {
      const remaining = end - Date.now();
      const untilDue = due === undefined ? Infinity : due + 1 - Date.now();
      const sub = this.deps.waiter.subscribe(
        model,
        jobId,
        Math.max(0, Math.min(remaining, untilDue > 0 ? untilDue : Infinity)),
        { active: opts.onChange !== undefined },
      );
      let view: JobView;
      try {
        view = await this.view(jobId);
      } catch (err) {
        sub.cancel();
        throw err;
      }
      const key = `${view.status}:${view.attempts}`;
      if (opts.onChange && key !== last) opts.onChange(view);
      last = key;
      if (TERMINAL_STATUSES.has(view.status) || remaining <= 0 || signal?.aborted) {
        sub.cancel();
        return view;
      }
      const deadline = unstartedDeadline(view);
      if (deadline !== due) {
        // Read again once it passes.
        due = deadline;
        if (deadline !== undefined && deadline < end) {
          sub.cancel();
          continue;
        }
      }
      const result = aborted ? await Promise.race([sub.signal, aborted]) : await sub.signal;
      if (result === "aborted") {
        sub.cancel();
        return view;
      }
      if (result) {
        const done = completedView(view, result);
        opts.onChange?.(done);
        return done;
      }
      // Shutting down: the waiting client gets the job as it stands (and can wait elsewhere).
      if (this.shuttingDown) return view;
    }
  }

  /** Whether this process is shutting down: waits end with the job as it stands. */
  get shuttingDown(): boolean {
    return this.deps.waiter.closed;
  }

  private tombstoneKey(model: string, jobId: string): string {
    return modelKey(this.deps.prefix, model, "ended", jobId);
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    this.closing ??= Promise.allSettled([...this.queues.values()].map((q) => q.close())).then(() => {});
    return this.closing;
  }
}

/** When a job that has never started must have started by (epoch ms); undefined otherwise. */
export function unstartedDeadline(view: JobView): number | undefined {
  if (view.status !== "queued" || view.attempts > 0 || view.deadline === undefined) return undefined;
  return Date.parse(view.deadline);
}
