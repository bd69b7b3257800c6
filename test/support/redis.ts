import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";

/** The shared Redis tests run against (never flushed, never stopped). */
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** A key prefix of this test's own; `cleanupPrefix` deletes every key under it. */
export function uniquePrefix(label: string): string {
  return `t-${label}-${randomBytes(4).toString("hex")}`;
}

export async function cleanupPrefix(prefix: string, url = REDIS_URL): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}
