import { setTimeout as sleep } from "node:timers/promises";
import type { Job } from "bullmq";
import { inputHash } from "../cache/canonical.js";
import type { Admission, ResultCache } from "../cache/result-cache.js";
import {
  type JobData,
  type JobResult,
  type JobView,
  PRIORITY_LEVELS,
  type Priority,
  TERMINAL_STATUSES,
} from "../contracts/jobs.js";
import {
  BatchTooLargeError,
  IdempotencyKeyReusedError,
  JobNotFoundError,
  QueueFullError,
  RedisUnavailableError,
} from "../errors/catalog.js";
import { DepthGate } from "./depth-gate.js";
import type { DrainRate } from "./drain-rate.js";
import type { Guard } from "./guard.js";
import type { IdempotencyScope, IdempotencyStore } from "./idempotency.js";
import { newJobId } from "./keys.js";
import type { JobRecords } from "./records.js";
import { cachedView, completedView, toView } from "./view.js";
import type { JobWaiter } from "./waiter.js";

export interface JobPolicy {
  readonly attempts: number;
  readonly backoffMs: number;
  readonly backoffJitter: number;
  readonly retentionSeconds: number;
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

export interface JobServiceDeps {
  readonly policy: JobPolicy;
  readonly guard: Guard;
  readonly waiter: JobWaiter;
  /** The jobs once added: their queues, views and waits. */
  readonly records: JobRecords;
  readonly cache: ResultCache;
  readonly idempotency: IdempotencyStore;
  readonly drain: DrainRate;
  /** Called once per cache lookup (for metrics and health). */
  readonly onCacheLookup?: (model: string, version: string, hit: boolean) => void;
  /** Called once per job added to a queue. */
  readonly onJobQueued?: (model: string, version: string) => void;
}

type Admitted = { req: SubmitRequest; jobId: string; admission: Admission };
type AdmitArgs = ReturnType<JobService["admitArgs"]>;

/**
 * New jobs as the API takes them: admission (cache, coalescing, queue cap), the add, and the
 * first wait; cache invalidation. Reading, canceling and waiting for a job that exists is
 * JobRecords'. Every call is guarded so Redis trouble surfaces as RedisUnavailableError quickly
 * instead of a hanging request.
 */
export class JobService {
  private readonly depth: DepthGate;

  constructor(private readonly deps: JobServiceDeps) {
    this.depth = new DepthGate(deps.policy.depthReadingMs);
  }

  /**
   * Answers one prediction request: from the cache, by joining the job already computing the
   * same input, or with a new job. With `waitMs`, holds until the job ends or the time passes;
   * the wake-up is registered before the job exists, so no event about it can be missed.
   * `onAccepted` hears which job answers the request (and whether from the cache) as soon as
   * that is known, before any wait; for a replayed Idempotency-Key, once the key's job has been
   * found (a key whose first request queued nothing goes on to queue its job).
   */
  async submit(
    req: SubmitRequest,
    waitMs = 0,
    onAccepted: (jobId: string, cached: boolean) => void = () => {},
  ): Promise<JobView> {
    const t0 = performance.now();
    const { guard, idempotency } = this.deps;
    let jobId = newJobId(req.model);
    const key = req.idempotencyKey;
    if (key) {
      const bodyHash = hashBody(req);
      const prior = await guard(() => idempotency.claim(scopeOf(req), key, { jobId, bodyHash }));
      if (prior) {
        if (prior.bodyHash !== bodyHash) throw new IdempotencyKeyReusedError(key, prior.jobId);
        try {
          const replayed =
            waitMs > 0
              ? await this.deps.records.waitFor(prior.jobId, waitMs)
              : await this.deps.records.view(prior.jobId);
          onAccepted(prior.jobId, false);
          return replayed;
        } catch (err) {
          if (!(err instanceof JobNotFoundError)) throw err;
        }
        // The key's first request queued nothing (answered from the cache, turned away, or Redis
        // failed mid-way) or its job has left retention: queue it now under the id the key is
        // bound to. Should the first add have reached Redis after all, BullMQ keeps that job.
        jobId = prior.jobId;
      }
    }
    const sub = waitMs > 0 ? this.deps.waiter.subscribe(req.model, jobId, waitMs) : undefined;
    try {
      const admission = await this.admit(this.admitArgs(req, jobId));
      const outcome = await this.settle([{ req, jobId, admission }]);
      const view = outcome[0]!;
      if (view === "cached") {
        sub?.cancel();
        if (admission.kind !== "hit") throw new Error("unreachable");
        onAccepted(admission.value.job_id, true);
        return cachedView(req.model, req.version, admission.value, req.priority, t0);
      }
      onAccepted(view.job_id, false);
      if (view.job_id !== jobId) {
        // Joined a job already computing this input.
        sub?.cancel();
        const left = waitMs - (performance.now() - t0);
        return waitMs > 0 ? this.deps.records.waitFor(view.job_id, Math.max(0, left)) : view;
      }
      if (!sub) return view;
      const result = await sub.signal;
      if (result) return completedView(view, result);
      return this.deps.records.waitFor(jobId, waitMs - (performance.now() - t0));
    } catch (err) {
      sub?.cancel();
      throw err;
    }
  }

  /**
   * Many inputs of one model in one call: one admission round trip for all, one to add the new
   * jobs. A full queue turns the whole batch away. With an Idempotency-Key the key is bound to
   * the jobs that answered each input; a retry gets those jobs, and queues (under the ids the
   * key holds) only the inputs whose jobs are not found.
   */
  async submitBatch(reqs: readonly SubmitRequest[], waitMs = 0, idempotencyKey?: string): Promise<JobView[]> {
    const t0 = performance.now();
    const { guard, idempotency, records } = this.deps;
    const model = reqs[0]!.model;
    let ids = reqs.map((req) => newJobId(req.model));
    let known: (JobView | undefined)[] = [];
    const scope = scopeOf(reqs[0]!);
    const bodyHash = idempotencyKey ? hashBatch(reqs) : "";
    if (idempotencyKey) {
      const rec = { jobId: ids[0]!, jobIds: ids, bodyHash };
      const prior = await guard(() => idempotency.claim(scope, idempotencyKey, rec));
      if (prior) {
        if (prior.bodyHash !== bodyHash || prior.jobIds?.length !== reqs.length)
          throw new IdempotencyKeyReusedError(idempotencyKey, prior.jobId);
        ids = [...prior.jobIds];
        known = await Promise.all(
          ids.map((id) =>
            records.view(id).catch((err: unknown) => {
              if (err instanceof JobNotFoundError) return undefined;
              throw err;
            }),
          ),
        );
      }
    }
    const items = reqs.map((req, n) => ({ req, jobId: ids[n]! })).filter((_, n) => known[n] === undefined);
    const admissions = await guard(() =>
      this.deps.cache.admitMany(items.map((i) => this.admitArgs(i.req, i.jobId))),
    );
    for (const a of admissions) this.noteDepth(model, a);
    const admitted: Admitted[] = items.map((i, n) => ({ ...i, admission: admissions[n]! }));
    const settled = await this.settle(admitted);
    const fresh = settled.map((v, i) => {
      const a = admitted[i]!;
      return v === "cached" && a.admission.kind === "hit"
        ? cachedView(a.req.model, a.req.version, a.admission.value, a.req.priority, t0)
        : (v as JobView);
    });
    const views = ids.map((_, n) => known[n] ?? fresh.shift()!);
    const answered = views.map((v) => v.job_id);
    if (idempotencyKey && answered.some((id, n) => id !== ids[n])) {
      // Inputs answered by the cache or by a job they joined: the key goes with those jobs.
      const rec = { jobId: answered[0]!, jobIds: answered, bodyHash };
      await guard(() => idempotency.repoint(scope, idempotencyKey, rec));
    }
    if (waitMs <= 0) return views;
    return Promise.all(
      views.map(async (v) =>
        TERMINAL_STATUSES.has(v.status)
          ? v
          : this.deps.records.waitFor(v.job_id, waitMs - (performance.now() - t0)),
      ),
    );
  }

  /**
   * One request's admission: in Redis (cache, coalescing, queue cap), or, when only the cap is
   * to be checked and the queue is known to be far below it, granted here (DepthGate).
   */
  private async admit(args: AdmitArgs): Promise<Admission> {
    if (!args.useCache && !args.coalesce && this.depth.hasRoom(args.model, args.maxDepth)) {
      return { kind: "claim", cacheKey: "", inflightKey: "", depth: 0, counted: false };
    }
    const admission = await this.deps.guard(() => this.deps.cache.admit(args));
    this.noteDepth(args.model, admission);
    return admission;
  }

  private noteDepth(model: string, a: Admission): void {
    if (a.kind === "claim" || a.kind === "full") this.depth.read(model, a.depth);
  }

  private admitArgs(req: SubmitRequest, jobId: string) {
    const { policy } = this.deps;
    const useCache = policy.cacheEnabled && req.cacheTtlSeconds > 0;
    return {
      model: req.model,
      version: req.version,
      // The input's key in the cache and among jobs in flight; no lookup, no hashing.
      hash: useCache || policy.coalesce ? inputHash(req.input) : "",
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
  private async settle(items: readonly Admitted[]): Promise<(JobView | "cached")[]> {
    const { guard, cache, policy, drain, onCacheLookup } = this.deps;
    const full = items.find((i) => i.admission.kind === "full");
    const claims = items.filter((i) => i.admission.kind === "claim");
    // Claims counted against the cap in Redis until their add is answered (see ResultCache).
    const counted = claims.filter((c) => c.admission.kind === "claim" && c.admission.counted);
    const unclaim = () => {
      if (counted.length === 0) return;
      const ids = counted.map((c) => c.jobId);
      void cache.unclaim(counted[0]!.req.model, ids).catch(() => {});
    };
    for (const i of items) {
      if (policy.cacheEnabled && i.req.cacheTtlSeconds > 0)
        onCacheLookup?.(i.req.model, i.req.version, i.admission.kind === "hit");
    }
    if (full) {
      // Frees the slots claimed; the jobs joined are no more shared with a request turned away.
      await Promise.all(
        items.map(({ admission: a, req, jobId }) =>
          (a.kind === "claim"
            ? cache.release(a.inflightKey, jobId)
            : a.kind === "join"
              ? cache.unjoin(req.model, a.jobId)
              : Promise.resolve()
          ).catch(() => {}),
        ),
      );
      unclaim();
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
      // Added (answered): the queue counts them now. A failed add keeps its claims until the
      // claim window ends, as it may still land.
      unclaim();
    }
    for (const j of added) this.deps.onJobQueued?.(j.data.model, j.data.version);
    if (added.length > 0) this.depth.added(added[0]!.data.model, added.length);
    const byId = new Map(added.map((j) => [j.id, j]));
    return Promise.all(
      items.map(async (i) => {
        const a = i.admission;
        // A key goes with the job that answered its request: the one joined, or the one whose
        // cached result answered it (the id that answer reported).
        const answeredBy = a.kind === "hit" ? a.value.job_id : a.kind === "join" ? a.jobId : undefined;
        const key = i.req.idempotencyKey;
        if (answeredBy !== undefined && key) {
          const rec = { jobId: answeredBy, bodyHash: hashBody(i.req) };
          await guard(() => this.deps.idempotency.repoint(scopeOf(i.req), key, rec));
        }
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
      removeOnFail: { age: policy.retentionSeconds },
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

  /** Cache invalidation: one input, one version, a model, or (no model) every model given. */
  async invalidateCache(target: {
    models: readonly string[];
    version?: string;
    input?: unknown;
  }): Promise<void> {
    const { cache, guard } = this.deps;
    await guard(async () => {
      if (target.input !== undefined && target.version !== undefined) {
        for (const m of target.models)
          await cache.invalidateInput(m, target.version, inputHash(target.input));
        return;
      }
      for (const m of target.models) await cache.invalidateModel(m, target.version);
    });
  }
}

/** Where a request's Idempotency-Key is looked up: its model's and its caller's keys. */
function scopeOf(req: SubmitRequest): IdempotencyScope {
  return { model: req.model, caller: req.caller };
}

/** What makes two batch requests the same for an Idempotency-Key. */
function hashBatch(reqs: readonly SubmitRequest[]): string {
  return inputHash({ batch: reqs.map((r) => hashBody(r)) });
}

/**
 * What makes two requests the same for an Idempotency-Key: the request as sent. The version is
 * the one asked for, not the one that served it, so a retry is still the same request once a
 * newer version has become the latest.
 */
function hashBody(req: SubmitRequest): string {
  return inputHash({
    input: req.input,
    version: req.requestedVersion,
    priority: req.priority,
    deadline: req.deadline !== undefined,
  });
}
