import type { Supervisor } from "./supervisor.js";

/**
 * The worker processes of one supervisor, as a count the autoscaler sets. New processes get
 * fresh names; the newest are drained first (SIGTERM: they finish the jobs in hand, and any
 * job they cannot finish in time is redelivered by its lease). Draining runs in the background
 * so a slow drain never blocks the next scaling decision.
 */
export class WorkerPool {
  private next = 1;
  private readonly running: string[] = [];
  private readonly draining = new Set<Promise<void>>();

  /** Slot number of each running process: its metrics port is base + slot. */
  private readonly slots = new Map<string, number>();

  constructor(
    private readonly supervisor: Supervisor,
    private readonly args: readonly string[] = ["worker"],
    /** WORKER_METRICS_PORT of the first process; each other one gets the next free port (0: off). */
    private readonly metricsPortBase = 0,
  ) {}

  /** Processes running and taking jobs (draining ones excluded). */
  size(): number {
    return this.running.length;
  }

  /** Processes still finishing their jobs after a scale-down. */
  drainingCount(): number {
    return this.draining.size;
  }

  names(): readonly string[] {
    return [...this.running];
  }

  async scaleTo(target: number): Promise<void> {
    while (this.running.length < target) {
      const name = `worker-${this.next++}`;
      const used = new Set(this.slots.values());
      let slot = 0;
      while (used.has(slot)) slot++;
      this.slots.set(name, slot);
      const env =
        this.metricsPortBase > 0 ? { WORKER_METRICS_PORT: String(this.metricsPortBase + slot) } : undefined;
      this.supervisor.add({ name, args: this.args, env });
      this.running.push(name);
    }
    while (this.running.length > target) {
      const name = this.running.pop()!;
      this.slots.delete(name);
      const done: Promise<void> = this.supervisor.remove(name).finally(() => this.draining.delete(done));
      this.draining.add(done);
    }
  }

  /** Resolves once every drain started so far has ended. */
  async settled(): Promise<void> {
    await Promise.all([...this.draining]);
  }
}
