import { hostname } from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { ResultCache } from "../cache/result-cache.js";
import type { Config } from "../config/index.js";
import { runSteps } from "../lifecycle/shutdown.js";
import type { JobData, JobResult } from "../contracts/jobs.js";
import { JobError } from "../errors/catalog.js";
import type { ModelCatalog } from "../models/catalog.js";
import type { InputValidator } from "../models/validation.js";
import { queueName } from "../queue/keys.js";
import { isConnectionError } from "../redis/connection.js";
import type { Logger } from "../telemetry/logger.js";
import type { WorkerTelemetry } from "../telemetry/telemetry.js";
import type { VersionLoadFailure, WorkerRecord, WorkerRegistry } from "../telemetry/workers.js";
import type { ModelPool } from "./pool.js";
import { makeProcessor } from "./processor.js";

export interface WorkerServiceDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly catalog: ModelCatalog;
  readonly validator: InputValidator;
  readonly pool: ModelPool;
  readonly registry: WorkerRegistry;
  readonly connection: () => Redis;
  /** The result cache on a given connection (each model's queue worker gets its own). */
  readonly cacheOn: (connection: Redis) => ResultCache;
  readonly concurrency: number;
  /** Per-job metrics and stats. */
  readonly telemetry?: WorkerTelemetry;
  /**
   * Called once when the process should be replaced (job count or RSS limit reached), with why
   * and after how many jobs (done or failed).
   */
  readonly onRecycle: (reason: string, jobs: number) => void;
  /** A model version a job asked for failed to load. */
  readonly onLoadFailed?: (model: string, version: string, reason: string) => void;
}

/**
 * One worker process's job intake: a BullMQ Worker per model queue feeding the model pool,
 * a heartbeat record in Redis, and recycling after WORKER_MAX_JOBS jobs or WORKER_MAX_RSS_BYTES.
 */
export class WorkerService {
  readonly id = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 6)}`;
  private readonly workers: Worker<JobData, JobResult>[] = [];
  private readonly startedAt = new Date().toISOString();
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 10 });
  private processed = 0;
  private failed = 0;
  private state: WorkerRecord["state"] = "starting";
  private heartbeat: NodeJS.Timeout | undefined;
  private recycleRequested = false;
  /**
   * WORKER_MAX_JOBS plus up to a tenth more, drawn once per process: workers started together
   * (say, by `inferline start`) do not all recycle at the same moment and leave none running.
   */
  private readonly maxJobs: number;
  private closing: Promise<void> | undefined;
  /** The models this process takes jobs for (set by `start`). */
  private models: readonly string[] = [];
  /** Versions that failed to load at the last scan of the repository (see `scanned`). */
  private loadFailed: readonly VersionLoadFailure[] = [];

  private readonly log: Logger;

  constructor(private readonly deps: WorkerServiceDeps) {
    this.maxJobs = withJitter(deps.config.WORKER_MAX_JOBS);
    this.log = deps.logger.child({ worker: this.id });
  }

  /** Loads `models` (each must be in the catalog) and starts taking their jobs. */
  async start(models: readonly string[]): Promise<void> {
    const { config } = this.deps;
    this.models = models;
    const logger = this.log;
    this.loopDelay.enable();
    await this.beat();
    this.heartbeat = setInterval(() => void this.beat(), config.WORKER_HEARTBEAT_INTERVAL_MS);
    this.heartbeat.unref();
    await this.deps.pool.warm(models);
    for (const model of models) {
      const connection = this.deps.connection();
      const processor = makeProcessor({
        // Results are stored on the connection their job completes on (see makeProcessor).
        cache: this.deps.cacheOn(connection),
        workerId: this.id,
        catalog: this.deps.catalog,
        validator: this.deps.validator,
        pool: this.deps.pool,
        logger,
        onFinished: (ok) => this.finished(ok),
        telemetry: this.deps.telemetry,
        onLoadFailed: this.deps.onLoadFailed,
      });
      const w = new Worker<JobData, JobResult>(queueName(model), processor.process, {
        connection,
        prefix: config.REDIS_KEY_PREFIX,
        concurrency: this.deps.concurrency,
        lockDuration: config.WORKER_LOCK_DURATION_MS,
        stalledInterval: config.WORKER_STALLED_INTERVAL_MS,
        maxStalledCount: config.WORKER_MAX_STALLED_COUNT,
        autorun: false,
      });
      // An unreachable Redis is logged once per outage (redis_lost), not at every retry.
      w.on("error", (err) =>
        logger[isConnectionError(err) ? "debug" : "warn"](
          { event: "worker_error", model, err: err.message },
          "queue worker error",
        ),
      );
      w.on("completed", processor.completed);
      w.on("stalled", (jobId) =>
        logger.warn({ event: "job_stalled", job_id: jobId, model }, "job lost its worker; redelivering"),
      );
      // A job whose workers died more often than WORKER_MAX_STALLED_COUNT is failed by BullMQ
      // itself when a worker next takes it, without the processor: counted and logged here.
      w.on("failed", (job, err) => {
        if (!job || JobError.fromReason(err.message).code !== "worker_lost") return;
        const { version, requestId } = job.data;
        this.deps.telemetry?.jobFailed(model, version, true);
        logger.warn(
          {
            event: "job_failed",
            job_id: job.id,
            model,
            version,
            request_id: requestId,
            attempt: job.attemptsMade,
            code: "worker_lost",
            duration_ms: 0,
          },
          JobError.fromReason(err.message).message,
        );
      });
      this.workers.push(w);
    }
    for (const w of this.workers)
      void w.run().catch((err: Error) => logger.error({ err }, "worker loop stopped"));
    await Promise.all(this.workers.map((w) => w.waitUntilReady()));
    this.state = "running";
    await this.beat();
    logger.info(
      {
        event: "worker_started",
        models,
        concurrency: this.deps.concurrency,
      },
      `worker ${this.id} taking jobs for ${models.join(", ")}`,
    );
  }

  /**
   * Told what the last scan of the repository (at start or on a reload) failed to load. The
   * heartbeat says so, with the versions now served, so API processes route requests without a
   * version to one that loads; once the worker is running it publishes at once rather than at the
   * next beat, so the API that asked for a reload sees the outcome as soon as this answers.
   */
  async scanned(failed: readonly VersionLoadFailure[]): Promise<void> {
    // A reason is an ONNX Runtime message, sometimes long: the record only needs its gist. API
    // callers read it (GET /api/models): paths are told from the repository, not the disk's root.
    const repository = path.join(this.deps.config.MODEL_REPOSITORY, path.sep);
    this.loadFailed = failed.map((f) => ({
      ...f,
      reason: f.reason.split(repository).join("").slice(0, 300),
    }));
    if (this.heartbeat !== undefined && this.closing === undefined) await this.beat();
  }

  private finished(ok: boolean): void {
    if (ok) this.processed++;
    else this.failed++;
    this.checkLimits();
  }

  /** ONNX Runtime threads of this process stuck in timed-out inferences (each holds a core). */
  private stuck = 0;

  /** Told how many session threads are stuck now; past WORKER_MAX_STUCK_THREADS it recycles. */
  stuckThreads(count: number): void {
    this.stuck = count;
    this.checkLimits();
  }

  /**
   * Asks for a replacement once WORKER_MAX_JOBS, WORKER_MAX_STUCK_THREADS or, after at least one
   * job, WORKER_MAX_RSS_BYTES is reached (once).
   */
  private checkLimits(): void {
    const { WORKER_MAX_RSS_BYTES, WORKER_MAX_STUCK_THREADS } = this.deps.config;
    if (this.recycleRequested) return;
    let reason: string | undefined;
    // A stuck thread holds a core until the process ends: only a fresh process gets it back.
    if (WORKER_MAX_STUCK_THREADS > 0 && this.stuck >= WORKER_MAX_STUCK_THREADS)
      reason = `${this.stuck} ONNX Runtime thread(s) stuck in timed-out inferences`;
    else if (this.maxJobs > 0 && this.processed + this.failed >= this.maxJobs)
      reason = `processed ${this.maxJobs} jobs`;
    // Only after a job: a process already over the limit before any job (models that big,
    // a limit that low) would be replaced by one just as big, over and over.
    else if (
      WORKER_MAX_RSS_BYTES > 0 &&
      this.processed + this.failed > 0 &&
      this.lastRss > WORKER_MAX_RSS_BYTES
    )
      reason = "RSS limit reached";
    if (reason) {
      this.recycleRequested = true;
      this.deps.onRecycle(reason, this.processed + this.failed);
    }
  }

  /** RSS as of the last heartbeat (reading it per job costs more than the job). */
  private lastRss = 0;

  private record(): WorkerRecord {
    const p99 = this.loopDelay.percentile(99) / 1e6;
    this.loopDelay.reset();
    return {
      id: this.id,
      pid: process.pid,
      host: hostname(),
      models: this.models,
      versions: Object.fromEntries(
        this.models.map((m) => [
          m,
          this.deps.catalog.has(m) ? this.deps.catalog.versions(m).map((d) => d.version) : [],
        ]),
      ),
      load_failed: this.loadFailed,
      state: this.state,
      started_at: this.startedAt,
      last_seen: new Date().toISOString(),
      processed: this.processed,
      failed: this.failed,
      rss_bytes: this.lastRss,
      event_loop_delay_p99_ms: Math.round(p99 * 100) / 100,
    };
  }

  private async beat(): Promise<void> {
    this.lastRss = process.memoryUsage.rss();
    if (this.state === "running") this.checkLimits();
    try {
      await this.deps.registry.publish(this.record());
    } catch (err) {
      this.log.debug({ event: "heartbeat_failed", err: (err as Error).message }, "heartbeat failed");
    }
  }

  get stats() {
    return { processed: this.processed, failed: this.failed };
  }

  /**
   * Stops taking jobs, lets the ones in hand finish within WORKER_SHUTDOWN_TIMEOUT_MS (after
   * that they are abandoned and redelivered by the lease), then closes everything. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const { config } = this.deps;
      const logger = this.log;
      this.state = "draining";
      logger.info({ event: "worker_draining" }, "worker draining");
      let drained = false;
      await runSteps(
        [
          { name: "announce draining", run: () => this.beat(), timeoutMs: 1000 },
          {
            name: "finish jobs in hand",
            run: async () => {
              await Promise.allSettled(this.workers.map((w) => w.close()));
              drained = true;
            },
            timeoutMs: config.WORKER_SHUTDOWN_TIMEOUT_MS,
          },
          {
            name: "abandon unfinished jobs to redelivery",
            run: () => (drained ? undefined : Promise.allSettled(this.workers.map((w) => w.close(true)))),
            timeoutMs: 2000,
          },
          { name: "remove heartbeat", run: () => this.deps.registry.remove(this.id), timeoutMs: 1000 },
          { name: "unload models", run: () => this.deps.pool.close() },
        ],
        logger,
      );
      clearInterval(this.heartbeat);
      this.loopDelay.disable();
      logger.info({ event: "worker_stopped", drained, ...this.stats }, "worker stopped");
    })();
    return this.closing;
  }
}

/** `n` plus a random whole number from 0 to a tenth of it (0 stays 0: no limit). */
function withJitter(n: number): number {
  return n > 0 ? n + Math.floor(Math.random() * (Math.floor(n / 10) + 1)) : 0;
}
