import { readFileSync } from "node:fs";
import { getHeapStatistics } from "node:v8";
import type { Redis } from "ioredis";
import type { QueueInspector, QueueReading } from "./queues.js";
import type { StatsReader } from "./stats-report.js";
import { recentJobsKey } from "./stats.js";
import type { WorkerRecord, WorkerRegistry } from "./workers.js";

export type HealthStatus = "warming_up" | "unhealthy" | "degraded" | "healthy";

export interface HealthThresholds {
  /** HEALTH_WARMUP_MS: longest warm-up after start (ms). */
  readonly warmupMs: number;
  readonly errorWindowJobs: number;
  readonly errorWindowMs: number;
  readonly errorMinJobs: number;
  readonly errorRateDegraded: number;
  readonly errorRateUnhealthy: number;
  readonly queueDepthDegraded: number;
  readonly cacheHitRateMin: number;
  readonly cacheMinLookups: number;
  readonly memoryMaxRatio: number;
}

export interface HealthDeps {
  readonly redis: Redis;
  readonly prefix: string;
  readonly workers: WorkerRegistry;
  readonly queues: QueueInspector;
  /** Absent when METRICS_ENABLED is off: error and cache rates are then not judged. */
  readonly stats?: StatsReader;
  readonly models: () => readonly string[];
  readonly thresholds: HealthThresholds;
}

export interface HealthReport {
  readonly status: HealthStatus;
  readonly reasons: readonly string[];
  readonly draining: boolean;
  readonly timestamp: string;
  readonly [key: string]: unknown;
}

/** Results are reused this long, so probes from many load balancers cost one evaluation. */
const REUSE_MS = 500;

/**
 * The service's health as one state with reasons:
 * - warming_up: started less than HEALTH_WARMUP_MS ago and not yet warm (Redis answered and a
 *   live worker serves every model);
 * - unhealthy: Redis unreachable, error rate over HEALTH_ERROR_RATE_UNHEALTHY, jobs waiting for
 *   a model no live worker serves, or memory over HEALTH_MEMORY_MAX_RATIO of its limit;
 * - degraded: no live worker (for a model), queue deeper than HEALTH_QUEUE_DEPTH_DEGRADED,
 *   error rate over HEALTH_ERROR_RATE_DEGRADED, or cache hit rate under
 *   HEALTH_CACHE_HIT_RATE_MIN once there were HEALTH_CACHE_MIN_LOOKUPS lookups;
 * - healthy otherwise (an idle system with live workers is healthy).
 * Error rate is a circuit-breaker window: the last HEALTH_ERROR_WINDOW_JOBS finished jobs that
 * ended within HEALTH_ERROR_WINDOW_MS, judged once there are HEALTH_ERROR_MIN_JOBS of them.
 */
export class HealthService {
  private draining = false;
  private warm = false;
  private readonly startedAt = Date.now();
  private last: { at: number; report: Promise<HealthReport> } | undefined;
  private readonly memoryLimit = cgroupMemoryLimit();

  constructor(private readonly deps: HealthDeps) {}

  /** Called on shutdown so load balancers stop sending new requests first. */
  startDraining(): void {
    this.draining = true;
    this.last = undefined;
  }

  async readiness(): Promise<{ ready: boolean; status: HealthStatus; reasons: readonly string[] }> {
    const r = await this.detailed();
    const ready = !r.draining && (r.status === "healthy" || r.status === "degraded");
    return { ready, status: r.status, reasons: r.draining ? ["shutting down", ...r.reasons] : r.reasons };
  }

  detailed(): Promise<HealthReport> {
    const now = Date.now();
    if (!this.last || now - this.last.at > REUSE_MS) this.last = { at: now, report: this.evaluate() };
    return this.last.report;
  }

  private async evaluate(): Promise<HealthReport> {
    const { thresholds: t, redis } = this.deps;
    const models = this.deps.models();
    const unhealthy: string[] = [];
    const degraded: string[] = [];
    let workers: WorkerRecord[] = [];
    let queues: QueueReading[] = [];
    let window: Awaited<ReturnType<StatsReader["report"]>> | undefined;
    let outcomes = { total: 0, failed: 0 };
    let redisUp = redis.status === "ready";
    if (redisUp) {
      try {
        const windowMinutes = Math.max(1, Math.ceil(t.errorWindowMs / 60_000));
        [workers, queues, window, outcomes] = await Promise.all([
          this.deps.workers.list(),
          this.deps.queues.read(models),
          this.deps.stats?.report(windowMinutes),
          this.deps.stats?.recentOutcomes(
            recentJobsKey(this.deps.prefix),
            t.errorWindowJobs,
            t.errorWindowMs,
          ) ?? outcomes,
        ]);
      } catch {
        redisUp = false;
      }
    }
    if (!redisUp) unhealthy.push(`Redis unreachable (${redis.status})`);

    const live = workers.filter((w) => w.state === "running");
    const perModel: Record<string, unknown> = {};
    let uncovered = 0;
    for (const q of queues) {
      const serving = live.filter((w) => w.models.includes(q.model)).length;
      if (serving === 0) {
        uncovered++;
        if (q.waiting > 0)
          unhealthy.push(`${q.waiting} job(s) waiting for ${q.model} and no live worker serves it`);
      }
      const m = window?.models[q.model];
      perModel[q.model] = {
        workers: serving,
        queue_depth: q.waiting,
        active: q.active,
        retrying: q.retrying,
        failed: q.failed,
        oldest_waiting_age_seconds: q.oldest_waiting_age_seconds,
        avg_processing_ms: m?.latency_ms.inference.avg_ms ?? null,
        avg_total_ms: m?.latency_ms.total.avg_ms ?? null,
        error_rate: m?.error_rate ?? null,
        cache: m?.cache ?? null,
      };
    }
    if (redisUp && live.length === 0) degraded.push("no active worker");
    else if (uncovered > 0)
      degraded.push(
        `no live worker for ${queues
          .filter((q) => !live.some((w) => w.models.includes(q.model)))
          .map((q) => q.model)
          .join(", ")}`,
      );

    const depth = queues.reduce((s, q) => s + q.waiting, 0);
    if (depth > t.queueDepthDegraded) degraded.push(`queue depth ${depth} over ${t.queueDepthDegraded}`);

    const errorRate = outcomes.total > 0 ? outcomes.failed / outcomes.total : null;
    if (errorRate !== null && outcomes.total >= t.errorMinJobs) {
      const pct = `${(errorRate * 100).toFixed(1)}% of the last ${outcomes.total} jobs failed`;
      if (errorRate > t.errorRateUnhealthy) unhealthy.push(`error rate ${pct}`);
      else if (errorRate > t.errorRateDegraded) degraded.push(`error rate ${pct}`);
    }

    const hits = window?.cache.hits ?? 0;
    const misses = window?.cache.misses ?? 0;
    const hitRate = hits + misses > 0 ? hits / (hits + misses) : null;
    if (hitRate !== null && hits + misses >= t.cacheMinLookups && hitRate < t.cacheHitRateMin)
      degraded.push(`cache hit rate ${(hitRate * 100).toFixed(1)}% under ${t.cacheHitRateMin * 100}%`);

    const memory = this.memory();
    if (memory.ratio > t.memoryMaxRatio)
      unhealthy.push(`memory at ${(memory.ratio * 100).toFixed(0)}% of its limit`);

    const uptimeMs = Date.now() - this.startedAt;
    if (!this.warm && (uptimeMs >= t.warmupMs || (redisUp && uncovered === 0))) this.warm = true;

    let status: HealthStatus;
    let reasons: string[];
    if (!this.warm) {
      status = "warming_up";
      reasons = [
        `started ${Math.round(uptimeMs / 1000)} s ago; waiting for ${redisUp ? "workers" : "Redis"} (at most ${Math.round(t.warmupMs / 1000)} s)`,
        ...unhealthy,
        ...degraded,
      ];
    } else if (unhealthy.length > 0) {
      status = "unhealthy";
      reasons = [...unhealthy, ...degraded];
    } else if (degraded.length > 0) {
      status = "degraded";
      reasons = degraded;
    } else {
      status = "healthy";
      reasons = [];
    }

    const totals = {
      waiting: depth,
      active: queues.reduce((s, q) => s + q.active, 0),
      retrying: queues.reduce((s, q) => s + q.retrying, 0),
      failed: queues.reduce((s, q) => s + q.failed, 0),
    };
    return {
      status,
      reasons,
      draining: this.draining,
      timestamp: new Date().toISOString(),
      checks: { redis: redisUp ? "up" : "down" },
      system: {
        uptime_seconds: Math.round(uptimeMs / 1000),
        active_workers: live.length,
        total_processed: workers.reduce((s, w) => s + w.processed, 0),
        total_failed: workers.reduce((s, w) => s + w.failed, 0),
        memory,
      },
      queue: {
        depth,
        active: totals.active,
        retrying: totals.retrying,
        failed: totals.failed,
        avg_processing_ms: window?.latency_ms.inference.avg_ms ?? null,
        avg_total_ms: window?.latency_ms.total.avg_ms ?? null,
        oldest_waiting_age_seconds: Math.max(0, ...queues.map((q) => q.oldest_waiting_age_seconds)),
      },
      cache: { hits, misses, hit_rate: hitRate === null ? null : round(hitRate) },
      errors: {
        rate: errorRate === null ? null : round(errorRate),
        failed: outcomes.failed,
        jobs: outcomes.total,
        window_jobs: t.errorWindowJobs,
        window_seconds: Math.round(t.errorWindowMs / 1000),
      },
      models: perModel,
      workers,
      thresholds: t,
    };
  }

  private memory() {
    const rss = process.memoryUsage.rss();
    if (this.memoryLimit !== undefined)
      return {
        rss_bytes: rss,
        limit_bytes: this.memoryLimit,
        ratio: round(rss / this.memoryLimit),
        basis: "rss",
      };
    const heap = getHeapStatistics();
    return {
      rss_bytes: rss,
      limit_bytes: heap.heap_size_limit,
      ratio: round(heap.used_heap_size / heap.heap_size_limit),
      basis: "heap",
    };
  }
}

function round(v: number): number {
  return Math.round(v * 1000) / 1000;
}

/** The container's memory limit (cgroup v2, then v1), if one is set. */
function cgroupMemoryLimit(): number | undefined {
  for (const f of ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]) {
    try {
      const n = Number(readFileSync(f, "utf8").trim());
      if (Number.isFinite(n) && n > 0 && n < 2 ** 60) return n;
    } catch {
      /* not there */
    }
  }
  return undefined;
}
