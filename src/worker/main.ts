import { ResultCache } from "../cache/result-cache.js";
import type { Redis } from "ioredis";
import type { Config } from "../config/index.js";
import { runSteps } from "../lifecycle/shutdown.js";
import { builtinRuntime } from "../models/builtin/runtime.js";
import { ModelCatalog } from "../models/catalog.js";
import { loadServedCatalog } from "../models/served-catalog.js";
import { onnxRuntime } from "../models/onnx/runtime.js";
import { lingeringSessionThreads } from "../models/onnx/session-host.js";
import { ReloadBus } from "../models/reload.js";
import { InputValidator } from "../models/validation.js";
import { createRedis } from "../redis/connection.js";
import { checkRedisAtStart, untilReady } from "../redis/preflight.js";
import { logOutages } from "../redis/outages.js";
import { createLogger, type Logger } from "../telemetry/logger.js";
import { serveMetrics } from "../telemetry/metrics-server.js";
import { createWorkerObservability } from "../telemetry/observability.js";
import { WorkerRegistry } from "../telemetry/workers.js";
import { ModelPool } from "./pool.js";
import { LoadFailures, reloadModels } from "./reload.js";
import { reportSessionEvent } from "./session-events.js";
import { WorkerService } from "./service.js";

export interface WorkerOptions {
  /** Models to take jobs for (default: MODELS, or every model in the repository). */
  readonly models?: readonly string[];
  readonly concurrency?: number;
  /**
   * Aborts a start still waiting for Redis (a SIGTERM before Redis answered): the start rejects
   * with StartCancelledError, its connections closed.
   */
  readonly signal?: AbortSignal;
}

export interface WorkerHandle {
  readonly id: string;
  close(): Promise<void>;
  /** Resolves with the reason, and the jobs taken, once the worker asks to be recycled. */
  readonly recycled: Promise<{ readonly reason: string; readonly jobs: number }>;
  /**
   * ONNX Runtime threads this process let go that still run (a hung or long inference): while
   * any does, the process must not exit normally (see lingeringSessionThreads) but be killed.
   */
  lingeringThreads(): number;
}

/** Composition root of a worker process. */
export async function startWorker(
  config: Config,
  options: WorkerOptions = {},
  logger: Logger = createLogger(config, { role: "worker" }),
): Promise<WorkerHandle> {
  const loadCatalog = () => ModelCatalog.load(config.MODEL_REPOSITORY, options.models ?? config.MODELS);
  const catalog = await loadServedCatalog(
    config.MODEL_REPOSITORY,
    options.models ?? config.MODELS,
    options.models ? "--models" : "MODELS",
  );
  for (const p of catalog.problems) logger.warn({ event: "model_skipped", path: p.path }, p.message);
  const models = catalog.names();

  const connections: Redis[] = [];
  // A batch's completions leave as soon as the batch is done, not after the next poll for I/O.
  const connection = () => {
    const c = createRedis(config.redisUrl, "blocking", {}, "callback");
    c.on("error", (err) => logger.debug({ event: "redis_error", err: err.message }, "redis error"));
    connections.push(c);
    return c;
  };
  // Workers wait for Redis as long as it takes (or until stopped), but say so; a Redis that
  // refuses REDIS_URL (password, user, database) fails the start instead.
  const first = connection();
  logOutages(first, logger);
  const waiting = "Redis not reachable yet; waiting for it";
  if (!(await checkRedisAtStart(first, config.redisUrl, 3000, logger, waiting)))
    await untilReady(first, config.redisUrl, options.signal).catch((err: unknown) => {
      first.disconnect();
      throw err;
    });
  const registry = new WorkerRegistry(
    first,
    config.REDIS_KEY_PREFIX,
    config.WORKER_HEARTBEAT_INTERVAL_MS * 3,
  );
  const obs = createWorkerObservability(config, connection(), logger);
  const pool = new ModelPool(
    catalog,
    [
      builtinRuntime,
      onnxRuntime({
        intraOpThreads: config.ORT_INTRA_OP_THREADS,
        interOpThreads: config.ORT_INTER_OP_THREADS,
        inferenceTimeoutMs: config.INFERENCE_TIMEOUT_MS,
        onSessionEvent: (e) => {
          reportSessionEvent(e, logger, obs.telemetry);
          if (e.type === "stuck" || e.type === "unstuck") service.stuckThreads(e.stuck);
        },
      }),
    ],
    (d, size) => obs.telemetry.batch(d, size),
  );
  let onRecycle: (recycle: { reason: string; jobs: number }) => void = () => {};
  const recycled = new Promise<{ reason: string; jobs: number }>((r) => (onRecycle = r));
  const service = new WorkerService({
    config,
    logger,
    catalog,
    validator: new InputValidator(),
    pool,
    registry,
    connection,
    cacheOn: (c) => new ResultCache(c, config.REDIS_KEY_PREFIX),
    concurrency: options.concurrency ?? config.WORKER_CONCURRENCY,
    telemetry: obs.telemetry,
    onRecycle: (reason, jobs) => onRecycle({ reason, jobs }),
    // An older version loaded on a job's demand that fails: left out from now on, as at a scan.
    onLoadFailed: (model, version, reason) => {
      if (!failures.add(catalog, { model, version, reason })) return;
      logger.warn(
        { event: "model_load_failed", model, version },
        `${model}@${version} failed to load: ${reason}`,
      );
      void service.scanned(failures.list()).catch(() => {});
    },
  });
  // Reloads look again at the models this process serves (it has no queue worker for others).
  let served: readonly string[] = models;
  // Every heartbeat says which versions failed here and why, those of the models it does not
  // serve (none of their versions loaded) too: API processes refuse their requests rather than
  // queue jobs no worker takes.
  const failures = new LoadFailures();
  const reload = async () => {
    const report = await reloadModels({
      workerId: service.id,
      catalog,
      pool,
      load: loadCatalog,
      models: served,
      failures,
      logger,
      onServed: (model, version) => obs.telemetry.serves(model, version),
    });
    // The heartbeat tells every API process what this worker serves and what failed to load.
    await service.scanned(failures.list());
    return report;
  };
  // POST /api/admin/models/reload reaches every worker through this subscription.
  await new ReloadBus(connection(), connection, config.REDIS_KEY_PREFIX).listen(reload, (err) =>
    logger.warn({ event: "reload_failed", err: err.message }, "model reload failed"),
  );
  // A newest version that cannot load must not stop the worker serving the one before it.
  await reload();
  // A model none of whose versions loads was dropped from the catalog by the reload: serve the
  // others rather than fail (and be restarted, and fail again) over one broken model.
  served = models.filter((m) => catalog.has(m));
  const skipped = models.filter((m) => !catalog.has(m));
  if (skipped.length > 0)
    logger.warn(
      { event: "models_not_served", models: skipped },
      `not serving ${skipped.join(", ")}: no version loads (see model_load_failed)`,
    );
  if (served.length === 0) throw new Error(`no model in ${config.MODEL_REPOSITORY} loads`);
  await service.start(served);
  pool.unloadIdleEvery(config.MODEL_IDLE_UNLOAD_SECONDS * 1000, ({ model, version }) =>
    logger.info(
      { event: "model_unloaded", model, version, reason: "idle" },
      `${model}@${version} had no job for ${config.MODEL_IDLE_UNLOAD_SECONDS} s and is not the latest; unloaded`,
    ),
  );
  const metricsServer =
    obs.metrics && config.WORKER_METRICS_PORT > 0
      ? await serveMetrics(obs.metrics, config.HOST, config.WORKER_METRICS_PORT, (err, requestId) =>
          logger.error(
            { event: "metrics_failed", request_id: requestId, err: err.message },
            "could not render /metrics",
          ),
        )
      : undefined;
  if (metricsServer)
    logger.info(
      { event: "metrics_listening", port: config.WORKER_METRICS_PORT },
      "worker metrics on /metrics",
    );
  else if (obs.metrics && config.WORKER_METRICS_PORT > 0)
    logger.warn(
      { event: "metrics_port_in_use", port: config.WORKER_METRICS_PORT },
      "worker metrics port is taken (another worker on this host?); serving no /metrics",
    );

  let closing: Promise<void> | undefined;
  return {
    id: service.id,
    recycled,
    lingeringThreads: lingeringSessionThreads,
    close: () =>
      (closing ??= runSteps(
        [
          {
            name: "drain worker",
            run: () => service.close(),
            timeoutMs: config.WORKER_SHUTDOWN_TIMEOUT_MS + 5000,
          },
          { name: "close metrics", run: () => void metricsServer?.close(), timeoutMs: 1000 },
          { name: "flush stats", run: () => obs.close(), timeoutMs: 2000 },
          { name: "disconnect Redis", run: () => connections.forEach((c) => c.disconnect()) },
        ],
        logger,
      )),
  };
}
