import type { Redis } from "ioredis";
import type { Config } from "../config/index.js";
import { FeedbackStore } from "./feedback.js";
import { HealthService } from "./health.js";
import type { Logger } from "./logger.js";
import { Metrics } from "./metrics.js";
import { QueueInspector } from "./queues.js";
import { StatsReader } from "./stats-report.js";
import { StatsRecorder } from "./stats.js";
import { ApiTelemetry, WorkerTelemetry } from "./telemetry.js";
import type { WorkerRegistry } from "./workers.js";

function recorder(config: Config, redis: Redis, logger: Logger): StatsRecorder {
  const stats = new StatsRecorder(
    redis,
    config.REDIS_KEY_PREFIX,
    {
      flushIntervalMs: config.STATS_FLUSH_INTERVAL_MS,
      retentionSeconds: config.STATS_RETENTION_SECONDS,
      recentJobs: config.HEALTH_ERROR_WINDOW_JOBS,
    },
    (err) => logger.debug({ event: "stats_flush_failed", err: err.message }, "stats flush failed"),
  );
  stats.start();
  return stats;
}

/** An API process's health, metrics, stats and feedback, wired from config. */
export function createApiObservability(
  config: Config,
  redis: Redis,
  workers: WorkerRegistry,
  models: () => readonly string[],
  logger: Logger,
) {
  const queues = new QueueInspector(redis, config.REDIS_KEY_PREFIX);
  const on = config.METRICS_ENABLED;
  const stats = on ? recorder(config, redis, logger) : undefined;
  const reader = on
    ? new StatsReader(
        redis,
        config.REDIS_KEY_PREFIX,
        config.STATS_FLUSH_INTERVAL_MS,
        config.STATS_RETENTION_SECONDS,
      )
    : undefined;
  const health = new HealthService({
    redis,
    prefix: config.REDIS_KEY_PREFIX,
    workers,
    queues,
    stats: reader,
    models,
    timeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    thresholds: {
      warmupMs: config.HEALTH_WARMUP_MS,
      errorWindowJobs: config.HEALTH_ERROR_WINDOW_JOBS,
      errorWindowMs: config.HEALTH_ERROR_WINDOW_MS,
      errorMinJobs: config.HEALTH_ERROR_MIN_JOBS,
      errorRateDegraded: config.HEALTH_ERROR_RATE_DEGRADED,
      errorRateUnhealthy: config.HEALTH_ERROR_RATE_UNHEALTHY,
      queueDepthDegraded: config.HEALTH_QUEUE_DEPTH_DEGRADED,
      cacheHitRateMin: config.HEALTH_CACHE_HIT_RATE_MIN,
      cacheMinLookups: config.HEALTH_CACHE_MIN_LOOKUPS,
      memoryMaxRatio: config.HEALTH_MEMORY_MAX_RATIO,
    },
  });
  const metrics = on
    ? new Metrics(
        "api",
        async () => ({
          models: await queues.read(models()),
          // Live ones, as health counts them: a worker starting or draining takes no jobs.
          workers: (await workers.list()).filter((w) => w.state === "running").length,
        }),
        () => health.detailed(),
      )
    : undefined;
  return {
    health,
    /** What buildApp takes. */
    http: {
      telemetry: new ApiTelemetry(metrics, stats),
      stats: reader,
      queues,
      feedback: new FeedbackStore(redis, config.REDIS_KEY_PREFIX, config.RESULT_RETENTION_SECONDS),
    },
    /** Writes the last stats and closes the queue readers. */
    close: async () => {
      await stats?.close();
      await queues.close();
    },
  };
}

/** A worker process's metrics and stats recorder. */
export function createWorkerObservability(config: Config, redis: Redis, logger: Logger) {
  const on = config.METRICS_ENABLED;
  const stats = on ? recorder(config, redis, logger) : undefined;
  const metrics = on ? new Metrics("worker") : undefined;
  return {
    metrics,
    telemetry: new WorkerTelemetry(metrics, stats),
    close: async () => stats?.close(),
  };
}
