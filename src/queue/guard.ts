import type { Redis } from "ioredis";
import { RedisUnavailableError } from "../errors/catalog.js";
import { isConnectionError } from "../redis/connection.js";

/**
 * Runs a Redis-backed call so that it can never hang a request: it fails at once when the
 * connection is down, and after `timeoutMs` when Redis does not answer.
 */
export function makeGuard(redis: Redis, timeoutMs: number) {
  return async function guard<T>(fn: () => Promise<T>): Promise<T> {
    if (redis.status !== "ready") throw new RedisUnavailableError(new Error(`connection ${redis.status}`));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RedisUnavailableError(new Error("timed out"))), timeoutMs);
    });
    try {
      return await Promise.race([fn(), timeout]);
    } catch (err) {
      if (err instanceof RedisUnavailableError) throw err;
      if (isConnectionError(err) || redis.status !== "ready") throw new RedisUnavailableError(err);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  };
}

export type Guard = ReturnType<typeof makeGuard>;
