import type { ModelDescriptor } from "../models/types.js";
import { signedBucketOf } from "./histogram.js";
import type { Metrics } from "./metrics.js";
import { encodeLabel, type StatsRecorder } from "./stats.js";

/**
 * What the API's request path reports. Each call is a few map updates (Prometheus counters and
 * the stats recorder's pending minute); with METRICS_ENABLED off every call is a no-op.
 *
 * - `jobQueued(model, version)`: after a job was added to a queue (once per job, not for cache
 *   hits or coalesced duplicates).
 * - `cacheLookup(model, version, hit)`: after each result cache lookup.
 */
export interface ApiHooks {
  jobQueued(model: string, version: string): void;
  cacheLookup(model: string, version: string, hit: boolean): void;
}

/**
 * The methods counted by name; any other (PROPFIND, TRACE, ...: all answered 405 or 404) is
 * counted as `OTHER`, so a client trying each method Node knows adds no series of its own.
 */
const COUNTED_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

export class ApiTelemetry implements ApiHooks {
  constructor(
    readonly metrics?: Metrics,
    private readonly stats?: StatsRecorder,
  ) {}

  get enabled(): boolean {
    return this.metrics !== undefined;
  }

  requestFinished(route: string, requestMethod: string, status: number, seconds: number): void {
    if (!this.metrics) return;
    const method = COUNTED_METHODS.has(requestMethod) ? requestMethod : "OTHER";
    this.metrics.httpRequests.inc({ route, method, status: String(status) });
    this.metrics.httpDuration.observe({ route, method }, seconds);
    this.stats?.count("", "", "req");
    if (status >= 500) this.stats?.count("", "", "5xx");
  }

  jobQueued(model: string, version: string): void {
    if (!this.metrics) return;
    this.metrics.jobsQueued.inc({ model, version });
    this.stats?.count(model, version, "sub");
  }

  cacheLookup(model: string, version: string, hit: boolean): void {
    if (!this.metrics) return;
    this.metrics.cacheLookups.inc({ model, result: hit ? "hit" : "miss" });
    this.stats?.count(model, version, hit ? "hit" : "miss");
  }

  /** A queued job this process ended before any worker ran it: canceled, or past its deadline. */
  jobEndedUnstarted(model: string, version: string, status: "canceled" | "expired"): void {
    if (!this.metrics) return;
    if (status === "canceled") {
      this.metrics.jobsCanceled.inc({ model, version });
      this.stats?.count(model, version, "cxl");
    } else {
      this.metrics.jobsExpired.inc({ model, version });
      this.stats?.count(model, version, "exp");
    }
  }

  /** Feedback on a finished job: the true label (classification) or value (regression). */
  feedback(model: string, version: string, outcome: { correct?: boolean; error?: number }): void {
    if (!this.stats) return;
    this.stats.count(model, version, "fbn");
    if (outcome.correct !== undefined) this.stats.count(model, version, "fbc", outcome.correct ? 1 : 0);
    if (outcome.error !== undefined) {
      this.stats.sum(model, version, "fba", Math.abs(outcome.error));
      this.stats.sum(model, version, "fbs", outcome.error * outcome.error);
    }
  }
}

export interface JobTimings {
  readonly waitMs: number;
  readonly inferenceMs: number;
  readonly totalMs: number;
}

/** What a worker reports per job and per batch; no-ops with METRICS_ENABLED off. */
export class WorkerTelemetry {
  constructor(
    readonly metrics?: Metrics,
    private readonly stats?: StatsRecorder,
  ) {}

  /**
   * Starts the job counters of a version this worker serves at 0. A labelled counter exists only
   * once counted, and Prometheus's rate() cannot see the increment that creates a series: without
   * this, the first failure of a fresh worker would never show in an error rate.
   */
  serves(model: string, version: string): void {
    const m = this.metrics;
    if (!m) return;
    for (const c of [m.jobsCompleted, m.jobsFailed, m.jobsRetried, m.jobsExpired])
      c.inc({ model, version }, 0);
  }

  jobCompleted(d: ModelDescriptor, t: JobTimings, output: unknown): void {
    if (!this.metrics) return;
    const { name: model, version } = d;
    this.metrics.jobsCompleted.inc({ model, version });
    this.metrics.queueWait.observe({ model }, t.waitMs / 1000);
    this.metrics.inference.observe({ model, version }, t.inferenceMs / 1000);
    this.metrics.e2e.observe({ model }, t.totalMs / 1000);
    const s = this.stats;
    if (!s) return;
    s.count(model, version, "ok");
    s.observe(model, version, "w", t.waitMs);
    s.observe(model, version, "i", t.inferenceMs);
    s.observe(model, version, "t", t.totalMs);
    s.outcome(true);
    this.prediction(d, output);
  }

  /** A failed attempt: `final` when no retry follows. */
  jobFailed(model: string, version: string, final: boolean): void {
    if (!this.metrics) return;
    if (final) {
      this.metrics.jobsFailed.inc({ model, version });
      this.stats?.count(model, version, "fail");
      this.stats?.outcome(false);
    } else {
      this.metrics.jobsRetried.inc({ model, version });
      this.stats?.count(model, version, "retry");
    }
  }

  /**
   * A job whose deadline passed before it started: it ends `expired`, without running. Not a
   * failure: the deadline is the client's, so the error rate (health, alerts) leaves it out.
   */
  jobExpired(model: string, version: string): void {
    if (!this.metrics) return;
    this.metrics.jobsExpired.inc({ model, version });
    this.stats?.count(model, version, "exp");
  }

  inferenceTimeout(model: string, version: string): void {
    this.metrics?.inferenceTimeouts.inc({ model, version });
  }

  sessionRestarted(model: string, version: string, reason: "timeout" | "exited"): void {
    this.metrics?.sessionRestarts.inc({ model, version, reason });
  }

  /** Abandoned session threads of this process still running (see stuckSessionThreads). */
  stuckThreads(count: number): void {
    this.metrics?.stuckThreads.set(count);
  }

  batch(d: ModelDescriptor, size: number): void {
    if (!this.metrics) return;
    this.metrics.batchSize.observe({ model: d.name }, size);
    this.stats?.add(`${d.name}|${d.version}|b|${size}`);
  }

  /**
   * The prediction's class (only labels the manifest names, so the field set stays bounded)
   * or regression value, for the distribution of predictions over time.
   */
  private prediction(d: ModelDescriptor, output: unknown): void {
    if (typeof output !== "object" || output === null) return;
    const o = output as { label?: unknown; value?: unknown };
    if (typeof o.label === "string" && d.labels?.includes(o.label)) {
      this.stats?.count(d.name, d.version, `p|${encodeLabel(o.label)}`);
    } else if (d.task === "regression" && typeof o.value === "number") {
      this.stats?.count(d.name, d.version, `r|${signedBucketOf(o.value)}`);
    }
  }
}
