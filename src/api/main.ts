import type { Config } from "../config/index.js";
import { runSteps } from "../lifecycle/shutdown.js";
import { buildApp } from "../http/app.js";
import { WaitSlots } from "../http/wait-slots.js";
import { ModelCatalog } from "../models/catalog.js";
import { ReloadFollower, withoutFailed } from "../models/reload.js";
import { ServedVersions } from "../models/served.js";
import { loadServedCatalog } from "../models/served-catalog.js";
import { InputValidator } from "../models/validation.js";
import { makeGuard } from "../queue/guard.js";
import { ResultCache } from "../cache/result-cache.js";
import { DrainRate } from "../queue/drain-rate.js";
import { IdempotencyStore } from "../queue/idempotency.js";
import { JobIntake } from "../queue/intake.js";
import { JobService } from "../queue/jobs.js";
import { JobRecords } from "../queue/records.js";
import { JobWaiter } from "../queue/waiter.js";
import { createRedis } from "../redis/connection.js";
import { checkRedisAtStart } from "../redis/preflight.js";
import { logOutages } from "../redis/outages.js";
import { createSecurity } from "../security/index.js";
import { createApiObservability } from "../telemetry/observability.js";
import { createLogger, type Logger } from "../telemetry/logger.js";
import { WorkerRegistry } from "../telemetry/workers.js";

export interface ApiHandle {
  readonly url: string;
  readonly port: number;
  /** Idempotent: drains, closes the server, then Redis. */
  close(): Promise<void>;
}

/** An API process's logger: buffered, since it writes a line per request. */
export function apiLogger(config: Config): Logger {
  return createLogger(config, { role: "api" }, { buffered: true });
}

/** Why the API cannot listen, in one line naming the variables to change. */
function listenProblem(config: Config, err: NodeJS.ErrnoException): string {
  const at = `HOST=${config.HOST} PORT=${config.PORT}`;
  switch (err.code) {
    case "EADDRINUSE":
      return `${at}: the port is in use (EADDRINUSE); set PORT to a free one (0 picks one)`;
    case "EADDRNOTAVAIL":
      return `${at}: no network interface of this host has that address (EADDRNOTAVAIL); HOST=0.0.0.0 listens on all of them`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `${at}: HOST does not resolve to an address (${err.code})`;
    case "EACCES":
      return `${at}: not allowed to listen there (EACCES; ports below 1024 need privileges)`;
    default:
      return `${at}: cannot listen (${err.message})`;
  }
}

/** Composition root of an API process: wires config → Redis → services → HTTP, and back down. */
export async function startApi(config: Config, logger: Logger = apiLogger(config)): Promise<ApiHandle> {
  const scannedAt = Date.now();
  const catalog = await loadServedCatalog(config.MODEL_REPOSITORY, config.MODELS);
  for (const p of catalog.problems) logger.warn({ event: "model_skipped", path: p.path }, p.message);

  const redis = createRedis(config.redisUrl, "command", { commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS });
  redis.on("error", (err) => logger.debug({ event: "redis_error", err: err.message }, "redis error"));
  logOutages(redis, logger);
  // Start serving even when Redis is away (health says so, requests get 503), but give it a
  // moment first so the first requests after boot do not fail needlessly. A Redis that refuses
  // REDIS_URL (password, user, database) fails the start instead.
  await checkRedisAtStart(
    redis,
    config.redisUrl,
    3000,
    logger,
    "Redis not reachable yet; answering 503 until it is",
  );
  const drain = new DrainRate();
  const waiter = new JobWaiter(
    () => {
      const c = createRedis(config.redisUrl, "blocking");
      c.on("error", () => {});
      return c;
    },
    config.REDIS_KEY_PREFIX,
    (model) => drain.record(model),
  );
  const workers = new WorkerRegistry(redis, config.REDIS_KEY_PREFIX, config.WORKER_HEARTBEAT_INTERVAL_MS * 3);
  const obs = createApiObservability(config, redis, workers, () => catalog.names(), logger);
  const guard = makeGuard(redis, config.REDIS_COMMAND_TIMEOUT_MS);
  const cache = new ResultCache(redis, config.REDIS_KEY_PREFIX);
  // Jobs of a model a reload has since removed stay readable until their retention ends.
  const servedSinceStart = new Set(catalog.names());
  const records = new JobRecords({
    redis,
    serves: (model) => servedSinceStart.has(model) || catalog.has(model),
    prefix: config.REDIS_KEY_PREFIX,
    retentionSeconds: config.RESULT_RETENTION_SECONDS,
    failedRetentionSeconds: config.FAILED_RETENTION_SECONDS,
    guard,
    waiter,
    cache,
    onEndedUnstarted: (model, version, status) =>
      obs.http.telemetry.jobEndedUnstarted(model, version, status),
  });
  const intake = new JobIntake({
    policy: {
      attempts: config.JOB_ATTEMPTS,
      backoffMs: config.JOB_BACKOFF_MS,
      backoffJitter: config.JOB_BACKOFF_JITTER,
      retentionSeconds: config.RESULT_RETENTION_SECONDS,
      failedRetentionSeconds: config.FAILED_RETENTION_SECONDS,
      failedMaxJobs: config.FAILED_MAX_JOBS,
      cacheEnabled: config.CACHE_ENABLED,
      coalesce: config.COALESCE_ENABLED,
      maxQueueDepth: config.QUEUE_MAX_DEPTH,
      depthReadingMs: config.QUEUE_DEPTH_READING_MS,
      addTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    },
    guard,
    records,
    cache,
    drain,
    onCacheLookup: (model, version, hit) => obs.http.telemetry.cacheLookup(model, version, hit),
    onJobQueued: (model, version) => obs.http.telemetry.jobQueued(model, version),
  });
  const jobs = new JobService({
    intake,
    retentionSeconds: config.RESULT_RETENTION_SECONDS,
    guard,
    waiter,
    records,
    cache,
    idempotency: new IdempotencyStore(redis, config.REDIS_KEY_PREFIX, config.IDEMPOTENCY_TTL_SECONDS),
  });
  const health = obs.health;
  await waiter.start(catalog.names());
  // Finished jobs past their retention leave Redis even when their queue has gone quiet.
  records.startSweeping(
    () => [...new Set([...servedSinceStart, ...catalog.names()])],
    Math.min(config.RESULT_RETENTION_SECONDS * 1000, config.FAILED_RETENTION_SECONDS * 1000, 60_000),
  );
  // Requests without a version go to one the live workers serve (not the newest folder when its
  // model fails to load in them): read before the first request, then with the heartbeats.
  const versions = new ServedVersions(catalog, () => workers.list(), {
    onError: (err) =>
      logger.debug({ event: "served_versions_unread", err: err.message }, "worker versions not read"),
    onLatest: (model, version, newest) =>
      version === newest
        ? logger.info(
            { event: "latest_version", model, version },
            `requests for ${model} without a version go to ${version}`,
          )
        : logger.warn(
            { event: "latest_version", model, version, newest },
            `requests for ${model} without a version go to ${version}: no live worker serves ${newest} (see GET /api/models/${model})`,
          ),
  });
  await versions.refresh();
  versions.start(config.WORKER_HEARTBEAT_INTERVAL_MS);
  // A reload another API process ran: serve what it served (rescanned here, minus what failed).
  const reloads = new ReloadFollower(
    redis,
    config.REDIS_KEY_PREFIX,
    scannedAt,
    async (failed) => {
      catalog.adopt(withoutFailed(await ModelCatalog.load(config.MODEL_REPOSITORY, config.MODELS), failed));
      await versions.refresh();
      logger.info(
        { event: "models_reloaded", models: catalog.names(), failed: failed.length },
        "model repository rescanned after a reload by another API process",
      );
    },
    (err) => logger.debug({ event: "reload_unread", err: err.message }, "last model reload not read"),
  );
  await reloads.check();
  reloads.start(config.WORKER_HEARTBEAT_INTERVAL_MS);

  const app = await buildApp({
    config,
    logger,
    catalog,
    versions,
    reloads,
    validator: new InputValidator(),
    jobs,
    records,
    guard,
    health,
    security: createSecurity(config, redis),
    waits: new WaitSlots(config.WAIT_MAX_HELD),
    ...obs.http,
  });
  await app.listen({ host: config.HOST, port: config.PORT }).catch((err: NodeJS.ErrnoException) => {
    throw new Error(listenProblem(config, err));
  });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.PORT;
  const host = config.HOST === "0.0.0.0" || config.HOST === "::" ? "127.0.0.1" : config.HOST;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  logger.info({ event: "api_started", url, models: catalog.names() }, `API listening on ${url}`);
  // Said by every API process, not only by `start`'s banner: under compose, Kubernetes or systemd
  // an API left open by mistake must show in its logs.
  if (config.AUTH_DISABLED)
    logger.warn(
      { event: "auth_disabled" },
      "authentication is off (AUTH_DISABLED=true): every route is open to anyone who can reach this process",
    );

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      health.startDraining();
      versions.stop();
      reloads.stop();
      logger.info({ event: "api_stopping" }, "API draining");
      const timer = setTimeout(() => app.server.closeAllConnections(), config.SHUTDOWN_TIMEOUT_MS);
      await runSteps(
        [
          { name: "wake waiting requests", run: () => waiter.close(), timeoutMs: 2000 },
          { name: "close HTTP server", run: () => app.close(), timeoutMs: config.SHUTDOWN_TIMEOUT_MS + 1000 },
          { name: "close queues", run: () => records.close(), timeoutMs: 2000 },
          { name: "flush stats", run: () => obs.close(), timeoutMs: 2000 },
          { name: "disconnect Redis", run: () => redis.disconnect() },
        ],
        logger,
      );
      clearTimeout(timer);
      logger.info({ event: "api_stopped" }, "API stopped");
    })());
  return { url, port, close };
}
