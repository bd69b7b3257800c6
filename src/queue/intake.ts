import { setTimeout as sleep } from "node:timers/promises";
import type { Job } from "bullmq";
import { resultKey } from "../cache/canonical.js";
import type { Admission, AdmitRequest, ResultCache } from "../cache/result-cache.js";
import {
  type JobData,
  type JobResult,
  type JobView,
  PRIORITY_LEVELS,
  type Priority,
} from "../contracts/jobs.js";
import {
  BatchTooLargeError,
  JobNotFoundError,
  QueueFullError,
  RedisUnavailableError,
} from "../errors/catalog.js";
import { DepthGate } from "./depth-gate.js";
import type { DrainRate } from "./drain-rate.js";
import type { Guard } from "./guard.js";
import type { JobRecords } from "./records.js";
import { toView } from "./view.js";

export interface JobPolicy {
  readonly attempts: number;
  readonly backoffMs: number;
  readonly backoffJitter: number;
  readonly retentionSeconds: number;
  /** How long a job that ended failed is kept in its model's failed set (s). */
  readonly failedRetentionSeconds: number;
  /** Most failed jobs kept per model. */
  readonly failedMaxJobs: number;
  readonly cacheEnabled: boolean;
  readonly coalesce: boolean;
  readonly maxQueueDepth: number;
  /**
   * How old a reading of a queue's depth may be for a request to skip the cap check in Redis
   * while the queue, with this request, stays within half its cap (ms; 0: check every request). See DepthGate.
   */
  readonly depthReadingMs: number;
  /** How long an add may take before it is given up (the Redis command timeout). */
  readonly addTimeoutMs: number;
}

export interface SubmitRequest {
  readonly model: string;
  /** The version that serves the request. */
  readonly version: string;
  /** What that version's files hold (ModelDescriptor.fingerprint): part of its results' keys. */
  readonly fingerprint: string;
  /**
   * The version the caller named (`?version=`); absent when it asked for the latest. An
   * Idempotency-Key binds the request as sent, so this, not `version`, is what the key compares.
   */
  readonly requestedVersion?: string;
  readonly input: unknown;
  readonly priority: Priority;
  readonly requestId: string;
  /** The model version's cache TTL (0: not cached). */
  readonly cacheTtlSeconds: number;
  /** The model's own queue cap, when its manifest sets one. */
  readonly maxQueueDepth?: number;
  /** Epoch ms by which the job must have started. */
  readonly deadline?: number;
  readonly idempotencyKey?: string;
  /** Who sent it (the API key's id; undefined with authentication off): keys are per caller. */
  readonly caller: string | undefined;
}

export interface JobIntakeDeps {
  readonly policy: JobPolicy;
  readonly guard: Guard;
  /** Where the jobs go: each model's queue, and the views of jobs joined. */
  readonly records: JobRecords;
  readonly cache: ResultCache;
  readonly drain: DrainRate;
  /** Called once per cache lookup (for metrics and health). */
  readonly onCacheLookup?: (model: string, version: string, hit: boolean) => void;
  /** Called once per job added to a queue. */
  readonly onJobQueued?: (model: string, version: string) => void;
}

/** A request, the id its job takes should it need one, and what admission made of it. */
export type Admitted = { req: SubmitRequest; jobId: string; admission: Admission };

/**
 * How requests become jobs: admission (cache, coalescing, queue cap), then the add of the jobs
 * claimed, in one round trip however many. Every Redis call is guarded.
 */
export class JobIntake {
  private readonly depth: DepthGate;

  constructor(private readonly deps: JobIntakeDeps) {
    this.depth = new DepthGate(deps.policy.depthReadingMs);
  }

  /**
   * One request's admission: in Redis (cache, coalescing, queue cap), or, when only the cap is
   * to be checked and the queue is known to be far below it, granted here (DepthGate).
   */
  async admit(req: SubmitRequest, jobId: string): Promise<Admission> {
    const args = this.admitArgs(req, jobId);
    let admission: Admission;
    if (!args.useCache && !args.coalesce && this.depth.admit(args.model, args.maxDepth)) {
      admission = { kind: "claim", cacheKey: "", inflightKey: "", depth: 0, counted: false };
    } else {
      const answered = this.depth.asked(args.model);
      try {
        admission = await this.deps.guard(() => this.deps.cache.admit(this.unseenOff(args)));
        this.noteDepth(args.model, admission);
      } finally {
        answered();
      }
    }
    this.noteLookup(req, admission);
    return admission;
  }

  /** Many requests' admissions (a batch, of one model) in one round trip. */
  async admitMany(items: readonly { req: SubmitRequest; jobId: string }[]): Promise<Admitted[]> {
    const model = items[0]?.req.model ?? "";
    const answered = this.depth.asked(model, items.length);
    let admissions: Admission[];
    try {
      admissions = await this.deps.guard(() =>
        this.deps.cache.admitMany(items.map((i) => this.unseenOff(this.admitArgs(i.req, i.jobId)))),
      );
      for (const a of admissions) this.noteDepth(model, a);
    } finally {
      answered();
    }
    return items.map((i, n) => {
      const admission = admissions[n]!;
      this.noteLookup(i.req, admission);
      return { ...i, admission };
    });
  }

  /**
   * The check in Redis counts the jobs this process admitted without it and has not added yet:
   * Redis cannot see them.
   */
  private unseenOff(args: AdmitRequest): AdmitRequest {
    return { ...args, maxDepth: args.maxDepth - this.depth.unseen(args.model) };
  }

  private noteDepth(model: string, a: Admission): void {
    // A claim's depth is the queue's before it: its own job is on its way.
    if (a.kind === "claim") this.depth.read(model, a.depth + 1);
    else if (a.kind === "full") this.depth.read(model, a.depth);
  }

  private noteLookup(req: SubmitRequest, a: Admission): void {
    if (this.deps.policy.cacheEnabled && req.cacheTtlSeconds > 0)
      this.deps.onCacheLookup?.(req.model, req.version, a.kind === "hit");
  }

  private admitArgs(req: SubmitRequest, jobId: string): AdmitRequest {
    const { policy } = this.deps;
    const useCache = policy.cacheEnabled && req.cacheTtlSeconds > 0;
    return {
      model: req.model,
      version: req.version,
      // The input's key in the cache and among jobs in flight; no lookup, no hashing.
      hash: useCache || policy.coalesce ? resultKey(req.fingerprint, req.input) : "",
      useCache,
      // A request with a deadline runs its own job: its deadline is not imposed on others
      // (joining it), nor another job's lack of one on it (joining another).
      coalesce: policy.coalesce && req.deadline === undefined,
      jobId,
      inflightTtlMs: policy.retentionSeconds * 1000,
      claimWindowMs: this.claimWindowMs,
      maxDepth: req.maxQueueDepth ?? policy.maxQueueDepth,
    };
  }

  /** Turns admissions into views: adds the claimed jobs (one round trip), reads joined ones. */
  async settle(items: readonly Admitted[]): Promise<(JobView | "cached")[]> {
    const { guard, cache, policy, drain } = this.deps;
    const full = items.find((i) => i.admission.kind === "full");
    const claims = items.filter((i) => i.admission.kind === "claim");
    // Claims counted against the cap in Redis until their add is answered (see ResultCache).
    const counted = claims.filter((c) => c.admission.kind === "claim" && c.admission.counted);
    const unclaim = () => {
      if (counted.length === 0) return;
      const ids = counted.map((c) => c.jobId);
      void cache.unclaim(counted[0]!.req.model, ids).catch(() => {});
    };
    // Claims the depth gate granted without Redis: counted there until their add is answered.
    const gated = claims.length - counted.length;
    const ungate = () => {
      if (gated > 0) this.depth.settled(claims[0]!.req.model, gated);
    };
    if (full) {
      // Frees the slots claimed; the jobs joined are no more shared with a request turned away.
      await Promise.all(
        items.map(({ admission: a, req, jobId }) =>
          (a.kind === "claim"
            ? cache.release(a.inflightKey, jobId)
            : a.kind === "join" && !a.own
              ? cache.unjoin(req.model, a.jobId)
              : Promise.resolve()
          ).catch(() => {}),
        ),
      );
      unclaim();
      ungate();
      const depth = full.admission.kind === "full" ? full.admission.depth : 0;
      const cap = full.req.maxQueueDepth ?? policy.maxQueueDepth;
      // More new jobs than the cap holds even with the queue empty: retrying cannot help.
      const needed = items.filter((i) => i.admission.kind === "claim" || i.admission.kind === "full").length;
      if (needed > cap) throw new BatchTooLargeError(needed, cap, full.req.model);
      throw new QueueFullError(full.req.model, depth, drain.retryAfterSeconds(full.req.model, depth, cap));
    }
    let added: Job<JobData, JobResult>[] = [];
    if (claims.length > 0) {
      const model = claims[0]!.req.model;
      // Should this fail, the in-flight slots stay: the add may have reached Redis even so (a
      // timeout). A retry joins the job if it exists; admission ignores a slot whose job does not.
      const queue = this.deps.records.queue(model);
      // One job is one script call; addBulk wraps even one in MULTI/EXEC.
      try {
        added = await guard(async () =>
          claims.length === 1
            ? [
                await queue.add(
                  "predict",
                  this.jobData(claims[0]!),
                  this.jobOpts(claims[0]!.req, claims[0]!.jobId),
                ),
              ]
            : queue.addBulk(
                claims.map((c) => ({
                  name: "predict",
                  data: this.jobData(c),
                  opts: this.jobOpts(c.req, c.jobId),
                })),
              ),
        );
      } finally {
        ungate();
      }
      // Added (answered): the queue counts them now. A failed add keeps its claims until the
      // claim window ends, as it may still land.
      unclaim();
    }
    for (const j of added) this.deps.onJobQueued?.(j.data.model, j.data.version);
    // Equal inputs of one batch: the later ones joined the job the batch claimed for the first,
    // which the batch shares with no one, so its own caller can still cancel it.
    const claimed = new Set(claims.map((c) => c.jobId));
    await Promise.all(
      items.map(({ admission: a, req }) =>
        a.kind === "join" && !a.own && claimed.has(a.jobId)
          ? cache.unjoin(req.model, a.jobId).catch(() => {})
          : Promise.resolve(),
      ),
    );
    const byId = new Map(added.map((j) => [j.id, j]));
    return Promise.all(
      items.map(async (i) => {
        const a = i.admission;
        if (a.kind === "hit") return "cached" as const;
        if (a.kind === "join") return this.joinedView(a.jobId);
        return toView(byId.get(i.jobId)!, "queued");
      }),
    );
  }

  private jobData(c: Admitted): JobData {
    const { req } = c;
    const cacheable = this.deps.policy.cacheEnabled && req.cacheTtlSeconds > 0;
    return {
      model: req.model,
      version: req.version,
      input: req.input,
      priority: req.priority,
      requestId: req.requestId,
      deadline: req.deadline,
      cache:
        cacheable || this.deps.policy.coalesce
          ? {
              key: c.admission.cacheKey,
              inflightKey: c.admission.inflightKey,
              ttlSeconds: cacheable ? req.cacheTtlSeconds : 0,
              admittedAt: c.admission.kind === "claim" ? c.admission.admittedAt : undefined,
              fingerprint: req.fingerprint,
            }
          : undefined,
    };
  }

  private jobOpts(req: SubmitRequest, jobId: string) {
    const { policy } = this.deps;
    return {
      jobId,
      priority: PRIORITY_LEVELS[req.priority],
      attempts: policy.attempts,
      backoff: { type: "exponential", delay: policy.backoffMs, jitter: policy.backoffJitter },
      removeOnComplete: { age: policy.retentionSeconds },
      // Failed jobs are the dead letters: kept longer, for an admin to look at and retry, and
      // bounded in number.
      removeOnFail: { age: policy.failedRetentionSeconds, count: policy.failedMaxJobs },
    };
  }

  /**
   * How long after a claim its job may still be on its way: twice the add's timeout, since a
   * write the guard gave up on can still reach Redis late.
   */
  private get claimWindowMs(): number {
    return this.deps.policy.addTimeoutMs * 2;
  }

  /**
   * The view of a job just joined: its claim may be younger than its add, so a job not there
   * yet is awaited for the claim window. Should it never appear, the add failed: 503, retry.
   */
  private async joinedView(jobId: string): Promise<JobView> {
    const until = performance.now() + this.claimWindowMs;
    for (let pause = 2; ; pause = Math.min(pause * 2, 50)) {
      try {
        return await this.deps.records.view(jobId);
      } catch (err) {
        if (!(err instanceof JobNotFoundError)) throw err;
        if (performance.now() >= until)
          throw new RedisUnavailableError(new Error(`joined job ${jobId} was never added`));
      }
      await sleep(pause);
    }
  }
}
