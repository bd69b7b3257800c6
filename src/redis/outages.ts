import type { Redis } from "ioredis";
import type { Logger } from "../telemetry/logger.js";

/**
 * Logs each outage of a process's Redis once: `redis_lost` (warn) when a connection that was
 * ready starts reconnecting, `redis_restored` (info, with how long it was down) when it is ready
 * again. One connection per process is enough to watch, and a line per retry would bury the
 * rest of the log. Before the first ready the start-up check reports instead; a connection
 * closed on purpose does not reconnect, so shutting down logs nothing.
 */
export function logOutages(redis: Redis, logger: Logger): void {
  let ready = redis.status === "ready";
  let lostAt: number | undefined;
  let lastError: string | undefined;
  redis.on("error", (err: Error) => {
    lastError = err.message;
  });
  redis.on("reconnecting", () => {
    if (!ready || lostAt !== undefined) return;
    lostAt = Date.now();
    logger.warn(
      { event: "redis_lost", err: lastError ?? "connection closed" },
      "Redis connection lost; retrying until it is back",
    );
  });
  redis.on("ready", () => {
    ready = true;
    lastError = undefined;
    if (lostAt === undefined) return;
    logger.info({ event: "redis_restored", down_ms: Date.now() - lostAt }, "Redis reachable again");
    lostAt = undefined;
  });
}
