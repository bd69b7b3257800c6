import { hostname } from "node:os";
import type { WorkerRecord } from "../../src/telemetry/workers.js";

/** A worker's heartbeat record as a test publishes it: running, idle, seen now; `fields` change it. */
export function workerRecord(fields: Partial<WorkerRecord> = {}): WorkerRecord {
  const now = new Date().toISOString();
  return {
    id: `${hostname()}:${process.pid}:test`,
    pid: process.pid,
    host: hostname(),
    models: ["echo"],
    state: "running",
    started_at: now,
    last_seen: now,
    processed: 0,
    failed: 0,
    rss_bytes: 0,
    event_loop_delay_p99_ms: 0,
    ...fields,
  };
}
