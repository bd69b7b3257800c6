import { QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import type { JobResult } from "../contracts/jobs.js";
import { coalesceWrites } from "../redis/coalesce.js";
import { queueName } from "./keys.js";
import { isCompleteResult } from "./view.js";

/** Why a waiter woke: a completion carries the job's result, which spares a read. */
type Wake = (result?: JobResult) => void;

/**
 * Wakes requests waiting on jobs. One QueueEvents stream reader per model feeds a map of job id
 * → wake-up callbacks. Callers subscribe *before* reading the job's state, so a job finishing
 * between submit and subscribe is never missed; the caller re-reads the state after each wake-up
 * (and at least every `recheckMs`), so a lost event costs latency, never a hung request. A
 * completion event hands its result to the waiter, which then needs no read at all.
 */
export class JobWaiter {
  private readonly events = new Map<string, QueueEvents>();
  private readonly waiters = new Map<string, Set<Wake>>();
  /** Waiters that also want to hear when a job starts (event streams). */
  private readonly activeWaiters = new Map<string, Set<Wake>>();
  private closing: Promise<void> | undefined;

  constructor(
    /** A connection for a reader to copy its options from; closed once copied. */
    private readonly connection: () => Redis,
    private readonly prefix: string,
    /** Told of every job that finishes (drain-rate estimates). */
    private readonly onFinished: (model: string) => void = () => {},
    readonly recheckMs = 2000,
  ) {}

  /** Starts a reader per model up front, so it is already listening when requests arrive. */
  async start(models: readonly string[]): Promise<void> {
    for (const m of models) this.readerFor(m);
  }

  private readerFor(model: string): QueueEvents {
    let qe = this.events.get(model);
    if (!qe) {
      const template = this.connection();
      qe = new QueueEvents(queueName(model), { connection: template, prefix: this.prefix });
      // QueueEvents reads on a duplicate of the connection it is given; the original would only
      // sit idle, one open connection per model.
      template.disconnect();
      // Errors (Redis away) are reported by health checks; the reader reconnects by itself.
      qe.on("error", () => {});
      // Coalesced, the duplicate's next XREAD leaves after the turn's work (the answers to the
      // requests this read woke) instead of before it, and finds more events waiting when
      // traffic is heavy.
      qe.client.then((c) => coalesceWrites(c as unknown as Redis)).catch(() => {});
      qe.on("completed", ({ jobId, returnvalue }) => {
        this.onFinished(model);
        this.wake(jobId, this.waiters, isCompleteResult(returnvalue) ? returnvalue : undefined);
      });
      qe.on("failed", ({ jobId }) => {
        this.onFinished(model);
        this.wake(jobId);
      });
      qe.on("removed", ({ jobId }) => this.wake(jobId));
      qe.on("active", ({ jobId }) => this.wake(jobId, this.activeWaiters));
      this.events.set(model, qe);
    }
    return qe;
  }

  private wake(jobId: string, map = this.waiters, result?: JobResult): void {
    if (map === this.waiters) this.wake(jobId, this.activeWaiters, result);
    const set = map.get(jobId);
    if (!set) return;
    map.delete(jobId);
    for (const fn of set) fn(result);
  }

  /**
   * Registers interest in a job. `signal` resolves on the job's next event or after `ms`
   * (capped at recheckMs), with the job's result when the event was its completion; `cancel`
   * forgets the registration.
   */
  subscribe(
    model: string,
    jobId: string,
    ms: number,
    opts: { active?: boolean } = {},
  ): { signal: Promise<JobResult | undefined>; cancel: () => void } {
    // Closed (the process shuts down): no wait, no new reader; callers answer with what they have.
    if (this.closed) return { signal: Promise.resolve(undefined), cancel: () => {} };
    this.readerFor(model);
    const map = opts.active ? this.activeWaiters : this.waiters;
    let resolve!: (result?: JobResult) => void;
    const signal = new Promise<JobResult | undefined>((r) => (resolve = r));
    const timer = setTimeout(() => fire(), Math.max(0, Math.min(ms, this.recheckMs)));
    const fire: Wake = (result) => {
      clearTimeout(timer);
      cancel();
      resolve(result);
    };
    const cancel = () => {
      clearTimeout(timer);
      const set = map.get(jobId);
      set?.delete(fire);
      if (set?.size === 0) map.delete(jobId);
    };
    let set = map.get(jobId);
    if (!set) map.set(jobId, (set = new Set()));
    set.add(fire);
    return { signal, cancel };
  }

  get pending(): number {
    return this.waiters.size;
  }

  /** Whether close() was called: waits end at once from then on. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const map of [this.waiters, this.activeWaiters]) {
        for (const set of map.values()) for (const fn of set) fn();
        map.clear();
      }
      await Promise.allSettled([...this.events.values()].map((qe) => closeReader(qe)));
    })();
    return this.closing;
  }
}

/**
 * QueueEvents.close() waits for its (duplicated) connection to become ready, which never
 * happens when Redis was unreachable since boot; after a grace period, disconnect it directly.
 */
async function closeReader(qe: QueueEvents, graceMs = 1000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), graceMs)));
  const outcome = await Promise.race([qe.close().then(() => "closed" as const), timeout]);
  clearTimeout(timer);
  if (outcome === "timeout") {
    const internal = qe as unknown as { connection?: { _client?: { disconnect(): void } } };
    internal.connection?._client?.disconnect();
  }
}
