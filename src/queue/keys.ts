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

/** A job id carries its model, so a result lookup is one queue read and no index. */
export function makeJobId(model: string, random: string): string {
  return `${model}.${random}`;
}

export function parseJobId(id: string): { model: string } | undefined {
  const m = JOB_ID.exec(id);
  return m?.[1] ? { model: m[1] } : undefined;
}
