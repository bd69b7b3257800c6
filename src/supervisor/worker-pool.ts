import { createServer } from "node:net";
import type { Supervisor } from "./supervisor.js";

/**
 * False only when something already listens on `port` at `host`. Any other failure (a HOST no
 * interface has, a privileged port) is the worker's to report: trying other ports would not help.
 */
export function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", (err: NodeJS.ErrnoException) => resolve(err.code !== "EADDRINUSE"));
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve(true)));
  });
}

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
  /** The scaling in progress: each waits for the one before (a launch waits for a port probe). */
  private scaling: Promise<void> = Promise.resolve();

  /**
   * Metrics port of each process, running or draining: a draining process serves its metrics
   * until it exits, so its port is not handed to a new one before then. A process the supervisor
   * restarts keeps its name, and so its port (the one before it has exited by then).
   */
  private readonly ports = new Map<string, number>();

  constructor(
    private readonly supervisor: Supervisor,
    private readonly args: readonly string[] = ["worker"],
    /** WORKER_METRICS_PORT: each process gets the lowest free port from here up (0: off). */
    private readonly metricsPortBase = 0,
    /** HOST, where workers serve their metrics. */
    private readonly metricsHost = "127.0.0.1",
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

  /**
   * The lowest port from the base up that no process of this pool holds (a process binds its
   * port only once its models are loaded) and nothing else on the host listens on.
   */
  private async freeMetricsPort(): Promise<number | undefined> {
    const held = new Set(this.ports.values());
    for (let port = this.metricsPortBase; port <= 65_535; port++) {
      if (!held.has(port) && (await portFree(this.metricsHost, port))) return port;
    }
    return undefined;
  }

  scaleTo(target: number): Promise<void> {
    const run = this.scaling.catch(() => {}).then(() => this.resize(target));
    this.scaling = run;
    return run;
  }

  private async resize(target: number): Promise<void> {
    while (this.running.length < target) {
      const name = `worker-${this.next++}`;
      const port = this.metricsPortBase > 0 ? await this.freeMetricsPort() : undefined;
      if (port !== undefined) this.ports.set(name, port);
      // No free port at all (or metrics off): the process serves no metrics rather than fail.
      const env = this.metricsPortBase > 0 ? { WORKER_METRICS_PORT: String(port ?? 0) } : undefined;
      this.supervisor.add({ name, args: this.args, env });
      this.running.push(name);
    }
    while (this.running.length > target) {
      const name = this.running.pop()!;
      const done: Promise<void> = this.supervisor.remove(name).finally(() => {
        this.draining.delete(done);
        this.ports.delete(name);
      });
      this.draining.add(done);
    }
  }

  /** Resolves once every drain started so far has ended. */
  async settled(): Promise<void> {
    await Promise.all([...this.draining]);
  }
}
