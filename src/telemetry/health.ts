import { readFileSync } from "node:fs";
import { getHeapStatistics } from "node:v8";
import type { Redis } from "ioredis";
import { evictionProblem, fullProblem, redisMemory, type RedisMemory } from "../redis/preflight.js";
import type { QueueInspector, QueueReading } from "./queues.js";
import type { StatsReader } from "./stats-report.js";
import { recentJobsKey } from "./stats.js";
import type { WorkerRecord, WorkerRegistry } from "./workers.js";

export const HEALTH_STATUSES = ["healthy", "degraded", "unhealthy", "warming_up"] as const;
export type HealthStatus = (typeof HEALTH_STATUSES)[number];

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
  /**
   * Longest an evaluation waits for its Redis reads (ms; REDIS_COMMAND_TIMEOUT_MS); past it,
   * Redis counts as unreachable. Default 1000.
   */
  readonly timeoutMs?: number;
}

/** What one evaluation reads from Redis. */
interface Readings {
  readonly workers: WorkerRecord[];
  readonly queues: QueueReading[];
  readonly window: Awaited<ReturnType<StatsReader["report"]>> | undefined;
  readonly outcomes: { total: number; failed: number };
  /** Redis's memory settings and use; undefined when they cannot be read (INFO not allowed). */
  readonly memory: RedisMemory | undefined;
}

/** One model's queue, workers and recent numbers, as /health and the models routes report them. */
export interface ModelHealth {
  /** Live workers serving the model. */
  readonly workers: number;
  readonly queue_depth: number;
  readonly active: number;
  readonly retrying: number;
  readonly failed: number;
  readonly oldest_waiting_age_seconds: number;
  readonly paused: boolean;
  readonly avg_processing_ms: number | null;
  readonly avg_total_ms: number | null;
  readonly error_rate: number | null;
  readonly cache: unknown;
}

export interface HealthReport {
  readonly status: HealthStatus;
  readonly reasons: readonly string[];
  readonly draining: boolean;
  /** What /health/ready answers (see HealthService.readiness). */
  readonly ready: boolean;
  readonly timestamp: string;
  /** Per model; empty when Redis could not be read. */
  readonly models?: Readonly<Record<string, ModelHealth>>;
  readonly [key: string]: unknown;
}

/**
 * An evaluation is shared by every request that comes while it runs and for this long after,
 * so probes from many load balancers cost one evaluation.
 */
const REUSE_MS = 500;

const LATE = Symbol("late");

/**
 * The service's health as one state with reasons:
 * - warming_up: started less than HEALTH_WARMUP_MS ago and not yet warm (Redis answered and a
 *   live worker serves every model);
 * - unhealthy: Redis unreachable or full (at its maxmemory), error rate over
 *   HEALTH_ERROR_RATE_UNHEALTHY, jobs waiting for a model no live worker serves, or memory over
 *   HEALTH_MEMORY_MAX_RATIO of its limit (only Redis out of reach and memory make the process not
 *   ready: see readiness());
 * - degraded: no live worker (for a model), a model version live workers failed to load,
 *   queue deeper than HEALTH_QUEUE_DEPTH_DEGRADED,
 *   error rate over HEALTH_ERROR_RATE_DEGRADED, cache hit rate under
 *   HEALTH_CACHE_HIT_RATE_MIN once there were HEALTH_CACHE_MIN_LOOKUPS lookups, or a Redis
 *   whose maxmemory-policy is not noeviction (it would evict queued jobs when full);
 * - healthy otherwise (an idle system with live workers is healthy).
 * Error rate is a circuit-breaker window: the last HEALTH_ERROR_WINDOW_JOBS finished jobs that
 * ended within HEALTH_ERROR_WINDOW_MS, judged once there are HEALTH_ERROR_MIN_JOBS of them.
 */
export class HealthService {
  private draining = false;
  private warm = false;
  private readonly startedAt = Date.now();
  /** The last evaluation; `at` is when it ended (undefined while it runs). */
  private last: { at?: number; report: Promise<HealthReport> } | undefined;
  /** Redis reads in flight: a slow Redis gets one round at a time, however many probes come. */
  private reads: Promise<Readings> | undefined;
  private readonly memoryLimit = cgroupMemoryLimit();

  constructor(private readonly deps: HealthDeps) {}

  /** Called on shutdown so load balancers stop sending new requests first. */
  startDraining(): void {
    this.draining = true;
    this.last = undefined;
  }

  /** Whether the process is shutting down (startDraining was called). */
  isDraining(): boolean {
    return this.draining;
  }

  /**
   * Whether this process should receive traffic: warm, not draining, and nothing of its own in
   * the way (Redis out of its reach, its memory over the limit). Fleet-wide trouble (an error
   * rate, a model without workers) makes the state unhealthy but leaves the process ready.
   */
  async readiness(): Promise<{ ready: boolean; status: HealthStatus; reasons: readonly string[] }> {
    const r = await this.detailed();
    return {
      ready: r.ready,
      status: r.status,
      reasons: r.draining ? ["shutting down", ...r.reasons] : r.reasons,
    };
  }

  detailed(): Promise<HealthReport> {
    const last = this.last;
    if (last && (last.at === undefined || Date.now() - last.at <= REUSE_MS)) return last.report;
    const entry: { at?: number; report: Promise<HealthReport> } = { report: this.evaluate() };
    const ended = () => (entry.at = Date.now());
    entry.report.then(ended, ended);
    this.last = entry;
    return entry.report;
  }

  /** The Redis reads of an evaluation; joins the round in flight, if any. */
  private read(models: readonly string[]): Promise<Readings> {
    this.reads ??= this.readNow(models).finally(() => (this.reads = undefined));
    return this.reads;
  }

  private async readNow(models: readonly string[]): Promise<Readings> {
    const { thresholds: t, stats, prefix } = this.deps;
    const windowMinutes = Math.max(1, Math.ceil(t.errorWindowMs / 60_000));
    const [workers, queues, window, outcomes, memory] = await Promise.all([
      this.deps.workers.list(),
      this.deps.queues.read(models),
      stats?.report(windowMinutes),
      stats?.recentOutcomes(recentJobsKey(prefix), t.errorWindowJobs, t.errorWindowMs),
      redisMemory(this.deps.redis),
    ]);
    return { workers, queues, window, outcomes: outcomes ?? { total: 0, failed: 0 }, memory };
  }

  /** The reads, or LATE once `timeoutMs` passed without them. */
  private readWithin(models: readonly string[], timeoutMs: number): Promise<Readings | typeof LATE> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<typeof LATE>((resolve) => {
      timer = setTimeout(() => resolve(LATE), timeoutMs);
      timer.unref();
    });
    return Promise.race([this.read(models), late]).finally(() => clearTimeout(timer));
  }

  private async evaluate(): Promise<HealthReport> {
    const { thresholds: t, redis } = this.deps;
    const timeoutMs = this.deps.timeoutMs ?? 1000;
    const models = this.deps.models();
    // This process cannot serve (Redis out of its reach, its own memory): the reasons that also
    // take it out of its load balancer. The others concern the whole fleet (jobs failing, a
    // model without workers): every process would see them at once, and taking them all out of
    // rotation would turn one model's trouble into an outage of every route.
    const local: string[] = [];
    const unhealthy: string[] = [];
    const degraded: string[] = [];
    let workers: WorkerRecord[] = [];
    let queues: QueueReading[] = [];
    let window: Readings["window"];
    let outcomes: Readings["outcomes"] = { total: 0, failed: 0 };
    let redisMem: RedisMemory | undefined;
    let redisUp = redis.status === "ready";
    if (redisUp) {
      const r = await this.readWithin(models, timeoutMs).catch(() => undefined);
      if (r === LATE) {
        redisUp = false;
        local.push(`Redis did not answer within ${timeoutMs} ms`);
      } else if (r === undefined) {
        redisUp = false;
        local.push(`Redis unreachable (${redis.status})`);
      } else {
        ({ workers, queues, window, outcomes, memory: redisMem } = r);
      }
    } else local.push(`Redis unreachable (${redis.status})`);

    const live = workers.filter((w) => w.state === "running");
    const perModel: Record<string, ModelHealth> = {};
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
        paused: q.paused,
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

    // A version the workers could not load is not served (they serve the one before it): the
    // fleet runs, but not what the repository says, until someone fixes or removes the folder.
    const unloadable = new Map<string, number>();
    for (const w of live)
      for (const f of w.load_failed ?? []) {
        const key = `${f.model}@${f.version}`;
        unloadable.set(key, (unloadable.get(key) ?? 0) + 1);
      }
    if (unloadable.size > 0)
      degraded.push(
        `failed to load in workers (the version before is served): ${[...unloadable]
          .map(([v, n]) => `${v} (${n} worker${n === 1 ? "" : "s"})`)
          .join(", ")}`,
      );

    const paused = queues.filter((q) => q.paused).map((q) => q.model);
    if (paused.length > 0) degraded.push(`queue paused by an operator: ${paused.join(", ")}`);
    // Full is the fleet's trouble, not this process's: results, cached answers and cancels
    // still work, so it does not take the process out of rotation.
    const full = fullProblem(redisMem);
    if (full) unhealthy.push(full);
    const eviction = evictionProblem(redisMem?.policy);
    if (eviction) degraded.push(eviction);

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
      local.push(`memory at ${(memory.ratio * 100).toFixed(0)}% of its limit`);

    const uptimeMs = Date.now() - this.startedAt;
    if (!this.warm && (uptimeMs >= t.warmupMs || (redisUp && uncovered === 0))) this.warm = true;

    unhealthy.unshift(...local);
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
      ready: !this.draining && status !== "warming_up" && local.length === 0,
      draining: this.draining,
      timestamp: new Date().toISOString(),
      checks: { redis: redisUp ? "up" : "down", redis_maxmemory_policy: redisMem?.policy ?? null },
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
