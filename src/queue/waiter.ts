import { QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { queueName } from "./keys.js";

/**
 * Wakes requests waiting on jobs. One QueueEvents stream reader per model feeds a map of job id
 * → wake-up callbacks. Callers subscribe *before* reading the job's state, so a job finishing
 * between submit and subscribe is never missed; the caller re-reads the state after each wake-up
 * (and at least every `recheckMs`), so a lost event costs latency, never a hung request.
 */
export class JobWaiter {
  private readonly events = new Map<string, QueueEvents>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private closing: Promise<void> | undefined;

  constructor(
    private readonly connection: () => Redis,
    private readonly prefix: string,
    readonly recheckMs = 2000,
  ) {}

  /** Starts a reader per model up front, so it is already listening when requests arrive. */
  async start(models: readonly string[]): Promise<void> {
    for (const m of models) this.readerFor(m);
  }

  private readerFor(model: string): QueueEvents {
    let qe = this.events.get(model);
    if (!qe) {
      qe = new QueueEvents(queueName(model), { connection: this.connection(), prefix: this.prefix });
      // Errors (Redis away) are reported by health checks; the reader reconnects by itself.
      qe.on("error", () => {});
      const wake = ({ jobId }: { jobId: string }) => this.wake(jobId);
      qe.on("completed", wake);
      qe.on("failed", wake);
      qe.on("removed", wake);
      this.events.set(model, qe);
    }
    return qe;
  }

  private wake(jobId: string): void {
    const set = this.waiters.get(jobId);
    if (!set) return;
    this.waiters.delete(jobId);
    for (const fn of set) fn();
  }

  /**
   * Registers interest in a job. `signal` resolves on the job's next event or after `ms`
   * (capped at recheckMs); `cancel` forgets the registration.
   */
  subscribe(model: string, jobId: string, ms: number): { signal: Promise<void>; cancel: () => void } {
    this.readerFor(model);
    let resolve!: () => void;
    const signal = new Promise<void>((r) => (resolve = r));
    const timer = setTimeout(() => fire(), Math.max(0, Math.min(ms, this.recheckMs)));
    const fire = () => {
      clearTimeout(timer);
      cancel();
      resolve();
    };
    const cancel = () => {
      clearTimeout(timer);
      const set = this.waiters.get(jobId);
      set?.delete(fire);
      if (set?.size === 0) this.waiters.delete(jobId);
    };
    let set = this.waiters.get(jobId);
    if (!set) this.waiters.set(jobId, (set = new Set()));
    set.add(fire);
    return { signal, cancel };
  }

  get pending(): number {
    return this.waiters.size;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const set of this.waiters.values()) for (const fn of set) fn();
      this.waiters.clear();
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
