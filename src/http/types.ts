import type { Config } from "../config/index.js";
import type { ModelCatalog } from "../models/catalog.js";
import type { ReloadFollower } from "../models/reload.js";
import type { ServedVersions } from "../models/served.js";
import type { InputValidator } from "../models/validation.js";
import type { Guard } from "../queue/guard.js";
import type { Security } from "../security/index.js";
import type { JobService } from "../queue/jobs.js";
import type { JobRecords } from "../queue/records.js";
import type { FastifyBaseLogger } from "fastify";
import type { WaitSlots } from "./wait-slots.js";
import type { FeedbackStore } from "../telemetry/feedback.js";
import type { QueueInspector } from "../telemetry/queues.js";
import type { StatsReader } from "../telemetry/stats-report.js";
import type { HealthReport } from "../telemetry/health.js";
import type { ApiTelemetry } from "../telemetry/telemetry.js";

export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
  /** The health state behind the answer (warming_up, unhealthy, degraded, healthy). */
  readonly status?: string;
}

/** What the HTTP layer is given; it reaches Redis only through these. */
export interface HttpDeps {
  readonly config: Config;
  readonly logger: FastifyBaseLogger;
  readonly catalog: ModelCatalog;
  /**
   * Which version a request goes to, from what the live workers serve (refreshed in the
   * background: resolving reads no Redis). Requests resolve through this, not the catalog.
   */
  readonly versions: Pick<ServedVersions, "resolve" | "latest" | "describe" | "refresh">;
  /** Tells the other API processes about a reload this one ran, so they serve the same. */
  readonly reloads: Pick<ReloadFollower, "announce">;
  readonly validator: InputValidator;
  /** New jobs: admission, add, first wait. */
  readonly jobs: JobService;
  /** Existing jobs: view, cancel, wait. */
  readonly records: JobRecords;
  /** Runs a Redis call so it fails fast (503) instead of hanging when Redis is away. */
  readonly guard: Guard;
  /** Slots for requests held waiting (`Prefer: wait`, WAIT_MAX_HELD). */
  readonly waits: WaitSlots;
  /** API keys, dashboard sessions, rate limits, event-stream slots (SSE_MAX_STREAMS). */
  readonly security: Security;
  /** Metrics and stats hooks; no-ops when METRICS_ENABLED is off. */
  readonly telemetry: ApiTelemetry;
  /** Cluster-wide stats; absent when METRICS_ENABLED is off. */
  readonly stats?: StatsReader;
  /** Queue counts and failed jobs, for health, /metrics and the dashboard. */
  readonly queues: QueueInspector;
  /** Ground truth sent back for finished jobs. */
  readonly feedback: FeedbackStore;
  readonly health: {
    readiness(): Promise<Readiness>;
    detailed(): Promise<HealthReport>;
    /** Shutting down: answers close their connections. */
    isDraining(): boolean;
  };
}
