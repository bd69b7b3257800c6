/** What travels through the queue. Type-only; imports nothing of ours. */

export type Priority = "high" | "normal" | "low";

/** BullMQ priorities (lower runs first). Every job has one, so FIFO holds within a level. */
export const PRIORITY_LEVELS: Readonly<Record<Priority, number>> = { high: 1, normal: 2, low: 3 };

export interface JobData {
  readonly model: string;
  readonly version: string;
  readonly input: unknown;
  readonly priority: Priority;
  /** The API request that created the job, carried into worker logs. */
  readonly requestId: string;
  /** Where the worker stores a successful result (absent when caching is off). */
  readonly cache?: {
    readonly key: string;
    readonly inflightKey: string;
    readonly ttlSeconds: number;
    /** When Redis admitted the job (ms): an invalidation of its input since keeps its result out. */
    readonly admittedAt?: number;
    /**
     * The version's files as the API read them (ModelDescriptor.fingerprint), which the key
     * holds: a worker that loaded other files under the same version stores nothing there.
     */
    readonly fingerprint?: string;
  };
  /** Epoch ms: a job not started by then ends `expired` without running. */
  readonly deadline?: number;
}

/** A completed job's return value. */
export interface JobResult {
  readonly output: unknown;
  readonly inferenceMs: number;
  readonly batchSize: number;
  readonly worker: string;
  /** When this (successful) attempt started, ms since epoch. */
  readonly startedAt: number;
  /** When it finished, ms since epoch (absent from results of older workers). */
  readonly finishedAt?: number;
  /** Which attempt this was, from 1 (absent from results of older workers). */
  readonly attempt?: number;
}

export type JobStatus = "queued" | "active" | "completed" | "failed" | "canceled" | "expired";

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set([
  "completed",
  "failed",
  "canceled",
  "expired",
]);

/** What the API reports for a job. */
export interface JobView {
  readonly job_id: string;
  readonly status: JobStatus;
  readonly model: string;
  readonly version: string;
  readonly priority: Priority;
  readonly created_at: string;
  readonly attempts: number;
  readonly max_attempts: number;
  readonly result?: unknown;
  readonly error?: { readonly code: string; readonly message: string };
  readonly timings?: {
    readonly queue_wait_ms: number;
    readonly inference_ms: number;
    readonly total_ms: number;
  };
  readonly batch_size?: number;
  readonly finished_at?: string;
  readonly next_attempt_at?: string;
  /** Jobs of its model's queue that run before it (0: it is next); queued jobs not waiting to retry. */
  readonly position?: number;
  readonly deadline?: string;
  /** True when the answer came from the result cache. */
  readonly cached?: boolean;
  /**
   * In the API's answers: where to read the job (`self`) and follow it (`events`); empty for a
   * cached answer whose job is past its retention.
   */
  readonly links?: { readonly self?: string; readonly events?: string };
}
