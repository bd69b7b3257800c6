import type { Redis } from "ioredis";
import type { Readiness } from "../http/types.js";
import type { WorkerRegistry } from "./workers.js";

/**
 * Health as load balancers and operators see it. Readiness: Redis answers and the process is
 * not draining. The detailed view adds the workers alive and why the status is what it is.
 */
export class HealthService {
  private draining = false;
  private readonly startedAt = Date.now();

  constructor(
    private readonly redis: Redis,
    private readonly workers: WorkerRegistry,
    private readonly models: () => readonly string[],
  ) {}

  /** Called on shutdown so load balancers stop sending new requests first. */
  startDraining(): void {
    this.draining = true;
  }

  async readiness(): Promise<Readiness> {
    const reasons: string[] = [];
    if (this.draining) reasons.push("shutting down");
    if (this.redis.status !== "ready") reasons.push(`Redis unreachable (${this.redis.status})`);
    return { ready: reasons.length === 0, reasons };
  }

  async detailed(): Promise<Record<string, unknown>> {
    const reasons: string[] = [];
    let status: "healthy" | "degraded" | "unhealthy" = "healthy";
    let workers: Awaited<ReturnType<WorkerRegistry["list"]>> = [];
    if (this.redis.status !== "ready") {
      status = "unhealthy";
      reasons.push("Redis unreachable");
    } else {
      try {
        workers = await this.workers.list();
      } catch {
        status = "unhealthy";
        reasons.push("Redis not answering");
      }
      if (status === "healthy" && workers.length === 0) {
        status = "degraded";
        reasons.push("no active worker");
      }
    }
    if (this.draining) reasons.push("shutting down");
    return {
      status,
      reasons,
      timestamp: new Date().toISOString(),
      system: {
        uptime_seconds: Math.round((Date.now() - this.startedAt) / 1000),
        active_workers: workers.length,
        total_processed: workers.reduce((s, w) => s + w.processed, 0),
        memory: { rss_bytes: process.memoryUsage().rss },
      },
      models: this.models(),
      workers,
    };
  }
}
