import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { HEALTH_STATUSES } from "./health.js";
import type { QueueReading } from "./queues.js";

/** Seconds buckets for latencies: 1 ms to 60 s. */
/** Seconds; from 0.1 ms, as small models (sentiment, echo) infer in well under a millisecond. */
const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/** A live reading taken when Prometheus scrapes (queue depth, workers). */
export interface QueueGauges {
  readonly models: readonly QueueReading[];
  readonly workers: number;
}

/**
 * One Prometheus registry per process. Names are snake_case with units; labels are bounded
 * (model and version come from the model repository, route from the route table, status is
 * the HTTP code or a fixed outcome word).
 */
export class Metrics {
  readonly registry = new Registry();

  readonly httpRequests = new Counter({
    name: "inferline_http_requests_total",
    help: "HTTP requests answered, by route template, method and status code.",
    labelNames: ["route", "method", "status"] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: "inferline_http_request_duration_seconds",
    help: "Time to answer an HTTP request (includes Prefer: wait), by route template.",
    labelNames: ["route", "method"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly jobsQueued = new Counter({
    name: "inferline_jobs_queued_total",
    help: "Jobs accepted into a model's queue.",
    labelNames: ["model", "version"] as const,
    registers: [this.registry],
  });
  readonly cacheLookups = new Counter({
    name: "inferline_cache_lookups_total",
    help: "Result cache lookups, by result (hit or miss).",
    labelNames: ["model", "result"] as const,
    registers: [this.registry],
  });
  readonly jobsCompleted = new Counter({
    name: "inferline_jobs_completed_total",
    help: "Jobs a worker completed.",
    labelNames: ["model", "version"] as const,
    registers: [this.registry],
  });
  readonly jobsFailed = new Counter({
    name: "inferline_jobs_failed_total",
    help: "Jobs that failed for good (attempts exhausted or not retryable).",
    labelNames: ["model", "version"] as const,
    registers: [this.registry],
  });
  readonly jobsExpired = new Counter({
    name: "inferline_jobs_expired_total",
    help: "Jobs whose deadline (timeout_ms) passed before a worker started them.",
    labelNames: ["model", "version"] as const,
    registers: [this.registry],
  });
  readonly jobsCanceled = new Counter({
    name: "inferline_jobs_canceled_total",
    help: "Queued jobs canceled (DELETE) before a worker started them.",
    labelNames: ["model", "version"] as const,
    registers: [this.registry],
  });
  readonly jobsRetried = new Counter({
    name: "inferline_jobs_retried_total",
    help: "Failed attempts that will be retried after a backoff.",
    labelNames: ["model", "version"] as const,
    registers: [this.registry],
  });
  readonly inferenceTimeouts = new Counter({
    name: "inferline_inference_timeouts_total",
    help: "ONNX inference batches that ran past their timeout (their jobs' attempt failed).",
    labelNames: ["model", "version"] as const,
    registers: [this.registry],
  });
  readonly sessionRestarts = new Counter({
    name: "inferline_onnx_session_restarts_total",
    help: "ONNX Runtime sessions replaced after a timeout or their thread exiting, by reason.",
    labelNames: ["model", "version", "reason"] as const,
    registers: [this.registry],
  });
  readonly stuckThreads = new Gauge({
    name: "inferline_onnx_stuck_threads",
    help: "Abandoned ONNX Runtime threads still inside a run this process cannot interrupt.",
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: "inferline_job_wait_seconds",
    help: "Time a job waited in the queue before its (successful) attempt started.",
    labelNames: ["model"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly inference = new Histogram({
    name: "inferline_inference_seconds",
    help: "Model inference time of the batch a job ran in.",
    labelNames: ["model", "version"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly e2e = new Histogram({
    name: "inferline_job_duration_seconds",
    help: "End to end: from a job being queued to its result being stored.",
    labelNames: ["model"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: "inferline_batch_size",
    help: "Jobs per model inference (dynamic batching).",
    labelNames: ["model"] as const,
    buckets: BATCH_BUCKETS,
    registers: [this.registry],
  });

  /**
   * The API's gauges read Redis on scrape (`gauges`), and `health` gives the state /health
   * reports: `inferline_health_status{status}` is 1 for it and 0 for the others, so what only
   * /health could tell (Redis full, a model without workers) can raise an alert.
   */
  constructor(
    role: "api" | "worker",
    gauges?: () => Promise<QueueGauges>,
    health?: () => Promise<{ status: string }>,
  ) {
    this.registry.setDefaultLabels({ role });
    collectDefaultMetrics({ register: this.registry, prefix: "inferline_" });
    if (health)
      new Gauge({
        name: "inferline_health_status",
        help: "1 for the state /health reports (healthy, degraded, unhealthy, warming_up), 0 for the others.",
        labelNames: ["status"] as const,
        registers: [this.registry],
        async collect() {
          const report = await health().catch(() => undefined);
          for (const status of HEALTH_STATUSES) this.set({ status }, report?.status === status ? 1 : 0);
        },
      });
    if (!gauges) return;
    // Read once per scrape, shared by the gauges below.
    let reading: Promise<QueueGauges> | undefined;
    const read = () => {
      reading ??= gauges().finally(() => setTimeout(() => (reading = undefined), 100).unref());
      return reading;
    };
    const perModel = (name: string, help: string, pick: (m: QueueGauges["models"][number]) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["model"] as const,
        registers: [this.registry],
        async collect() {
          this.reset();
          const g = await read().catch(() => undefined);
          for (const m of g?.models ?? []) this.set({ model: m.model }, pick(m));
        },
      });
    perModel("inferline_queue_depth", "Jobs waiting to start (not yet taken by a worker).", (m) => m.waiting);
    perModel("inferline_queue_active_jobs", "Jobs being processed by workers.", (m) => m.active);
    perModel("inferline_queue_retrying_jobs", "Jobs waiting out a retry backoff.", (m) => m.retrying);
    perModel("inferline_queue_failed_jobs", "Failed jobs still retained.", (m) => m.failed);
    perModel(
      "inferline_queue_oldest_job_age_seconds",
      "Age of the oldest job waiting to start (0 when none waits).",
      (m) => m.oldest_waiting_age_seconds,
    );
    perModel(
      "inferline_queue_paused",
      "1 while an operator has paused the model's queue (no job starts), else 0.",
      (m) => (m.paused ? 1 : 0),
    );
    new Gauge({
      name: "inferline_workers",
      help: "Live workers: a fresh heartbeat, not starting or draining (0 when Redis cannot be read).",
      registers: [this.registry],
      async collect() {
        // Never the last count seen: while Redis is away no heartbeat can be read (and no worker
        // can take jobs), so the reading is 0 and InferlineNoWorkers is not kept quiet by it.
        this.reset();
        const g = await read().catch(() => undefined);
        if (g) this.set(g.workers);
      },
    });
    new Gauge({
      name: "inferline_redis_up",
      help: "1 when Redis answered the last scrape's queue reading, else 0.",
      registers: [this.registry],
      async collect() {
        const up = await read().then(
          () => 1,
          () => 0,
        );
        this.set(up);
      },
    });
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
