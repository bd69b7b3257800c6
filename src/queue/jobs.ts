import { inputHash, resultKey } from "../cache/canonical.js";
import type { Admission, ResultCache } from "../cache/result-cache.js";
import { type JobView, TERMINAL_STATUSES } from "../contracts/jobs.js";
import { IdempotencyKeyReusedError, JobNotFoundError, RedisUnavailableError } from "../errors/catalog.js";
import { whenAborted } from "../lifecycle/aborted.js";
import { isConnectionError } from "../redis/connection.js";
import type { Guard } from "./guard.js";
import type { IdempotencyScope, IdempotencyStore } from "./idempotency.js";
import type { JobIntake, SubmitRequest } from "./intake.js";
import { newJobId } from "./keys.js";
import type { JobRecords } from "./records.js";
import { cachedView, completedView, type CachedJobView } from "./view.js";
import type { JobWaiter } from "./waiter.js";

export interface JobServiceDeps {
  /** Admission and the add of new jobs. */
  readonly intake: JobIntake;
  /** RESULT_RETENTION_SECONDS: dates the job of a cache entry that does not say until when it is kept. */
  readonly retentionSeconds: number;
  readonly guard: Guard;
  readonly waiter: JobWaiter;
  /** The jobs once added: their views and waits. */
  readonly records: JobRecords;
  readonly cache: ResultCache;
  readonly idempotency: IdempotencyStore;
}

/**
 * Prediction requests as the API takes them: Idempotency-Key claims and replays, admission and
 * the add (JobIntake's), and the first wait; cache invalidation. Reading, canceling and waiting
 * for a job that exists is JobRecords'. Every call is guarded so Redis trouble surfaces as
 * RedisUnavailableError quickly instead of a hanging request.
 */
export class JobService {
  constructor(private readonly deps: JobServiceDeps) {}

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
    /** Ends a wait early (the client went away): the job as it stands is answered. */
    signal?: AbortSignal,
  ): Promise<JobView | CachedJobView> {
    const t0 = performance.now();
    const { guard, idempotency, intake } = this.deps;
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
              ? await this.deps.records.waitFor(prior.jobId, waitMs, { signal })
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
    // A job not started by its deadline ends expired when next read: the wait reads it then.
    const firstWake = req.deadline === undefined ? waitMs : Math.min(waitMs, req.deadline + 1 - Date.now());
    const sub = waitMs > 0 ? this.deps.waiter.subscribe(req.model, jobId, Math.max(0, firstWake)) : undefined;
    try {
      const admission = await intake.admit(req, jobId);
      if (key) await this.repointKey(req, key, admission);
      const view = (await intake.settle([{ req, jobId, admission }]))[0]!;
      if (view === "cached") {
        sub?.cancel();
        if (admission.kind !== "hit") throw new Error("unreachable");
        onAccepted(admission.value.job_id, true);
        return cachedView(
          req.model,
          req.version,
          admission.value,
          req.priority,
          t0,
          this.deps.retentionSeconds,
        );
      }
      onAccepted(view.job_id, false);
      if (view.job_id !== jobId) {
        // Joined a job already computing this input.
        sub?.cancel();
        const left = waitMs - (performance.now() - t0);
        return waitMs > 0 ? this.deps.records.waitFor(view.job_id, Math.max(0, left), { signal }) : view;
      }
      if (!sub) return view;
      const abort = signal ? whenAborted(signal) : undefined;
      const result = await (abort ? Promise.race([sub.signal, abort.promise]) : sub.signal);
      abort?.dispose();
      if (result === "aborted") {
        sub.cancel();
        return view;
      }
      if (result) return completedView(view, result);
      return this.deps.records.waitFor(jobId, waitMs - (performance.now() - t0), { signal });
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
  async submitBatch(
    reqs: readonly SubmitRequest[],
    waitMs = 0,
    idempotencyKey?: string,
    signal?: AbortSignal,
  ): Promise<(JobView | CachedJobView)[]> {
    const t0 = performance.now();
    const { guard, idempotency, intake, records } = this.deps;
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
    const admitted = await intake.admitMany(items);
    const settled = await intake.settle(admitted);
    const fresh = settled.map((v, i) => {
      const a = admitted[i]!;
      return v === "cached" && a.admission.kind === "hit"
        ? cachedView(
            a.req.model,
            a.req.version,
            a.admission.value,
            a.req.priority,
            t0,
            this.deps.retentionSeconds,
          )
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
          : this.deps.records.waitFor(v.job_id, waitMs - (performance.now() - t0), { signal }),
      ),
    );
  }

  /**
   * A key goes with the job that answered its request: the one joined, or the one whose cached
   * result answered it (the id that answer reported).
   */
  private async repointKey(req: SubmitRequest, key: string, a: Admission): Promise<void> {
    const answeredBy = a.kind === "hit" ? a.value.job_id : a.kind === "join" ? a.jobId : undefined;
    if (answeredBy === undefined) return;
    const rec = { jobId: answeredBy, bodyHash: hashBody(req) };
    await this.deps.guard(() => this.deps.idempotency.repoint(scopeOf(req), key, rec));
  }

  /** Cache invalidation of one model: one input (of a version), one version, or all of it. */
  async invalidateCache(
    target: { model: string } & (
      { version?: string } | { version: string; fingerprint: string; input: unknown }
    ),
  ): Promise<void> {
    const { cache, guard } = this.deps;
    const { model, version } = target;
    await guard(async () => {
      if ("input" in target)
        await cache.invalidateInput(model, target.version, resultKey(target.fingerprint, target.input));
      else await cache.invalidateModel(model, version);
    });
  }

  /**
   * Whole-cache invalidation `id`: every model's generation bumped at once (one round trip),
   * each atomically and at most once for this id. Says which models it knows were reached; the
   * others may or may not have been when Redis stopped answering, and a repeat with the same id
   * finishes them without touching the reached ones again.
   */
  async invalidateEverything(
    models: readonly string[],
    id: string,
  ): Promise<{ invalidated: string[]; remaining: string[] }> {
    const { cache, guard } = this.deps;
    const reached = new Set<string>();
    const failures: Error[] = [];
    try {
      await guard(() =>
        Promise.all(
          models.map((m) =>
            cache.invalidateOnce(m, id).then(
              () => void reached.add(m),
              (err: unknown) => void failures.push(err instanceof Error ? err : new Error(String(err))),
            ),
          ),
        ),
      );
    } catch (err) {
      // Timed out or not connected: the models reached so far are known, the others are not.
      if (!(err instanceof RedisUnavailableError)) throw err;
    }
    const bug = failures.find((err) => !isConnectionError(err));
    if (bug !== undefined) throw bug;
    // Taken now: an answer arriving after the deadline is not reported as done.
    const invalidated = models.filter((m) => reached.has(m));
    return { invalidated, remaining: models.filter((m) => !invalidated.includes(m)) };
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
