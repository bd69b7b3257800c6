import { randomBytes } from "node:crypto";

/**
 * Redis key layout. Each model's BullMQ queue is named `{model}`, so every key of one queue
 * (`<prefix>:{model}:...`) shares one hash tag and lives in one Redis Cluster slot; Inferline's
 * own per-model keys use the same tag.
 */
export function queueName(model: string): string {
  return `{${model}}`;
}

export function modelKey(prefix: string, model: string, ...parts: string[]): string {
  return [prefix, queueName(model), ...parts].join(":");
}

/** Process-wide keys (worker heartbeats, stats) share a tag of their own. */
export function globalKey(prefix: string, ...parts: string[]): string {
  return [prefix, "{global}", ...parts].join(":");
}

const JOB_ID = /^([a-z0-9][a-z0-9-]{0,62})\.([0-9a-f]{32})$/;

// Random bytes are drawn 4 KB at a time (as crypto.randomUUID does): one call to the system's
// generator per 256 ids instead of one per id.
let entropy = Buffer.alloc(0);
let taken = 0;

/**
 * A new job id: the model (so a result lookup is one queue read and no index) and 128 random
 * bits (unique under any concurrency, across any number of API processes).
 */
export function newJobId(model: string): string {
  if (taken + 16 > entropy.length) {
    entropy = randomBytes(4096);
    taken = 0;
  }
  const id = `${model}.${entropy.toString("hex", taken, taken + 16)}`;
  taken += 16;
  return id;
}

export function parseJobId(id: string): { model: string } | undefined {
  const m = JOB_ID.exec(id);
  return m?.[1] ? { model: m[1] } : undefined;
}
