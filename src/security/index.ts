import type { Config } from "../config/index.js";
import { createRedis, waitReady } from "../redis/connection.js";
import { KeyRing } from "./keys.js";
import { RateLimiter } from "./rate-limit.js";
import { SessionStore } from "./sessions.js";
import { StreamSlots } from "./streams.js";

export { allows, type Principal, type Scope } from "./keys.js";
export type { RateDecision, RateRule } from "./rate-limit.js";
export { jsonTooDeep } from "./json-depth.js";
export { StreamSlots } from "./streams.js";

/**
 * What the API's protection layer works with: keys, sessions, shared rate limits, stream slots.
 * Sessions and rate limits share one Redis connection of their own.
 */
export interface Security {
  readonly keys: KeyRing;
  readonly sessions: SessionStore;
  /** Undefined when both rate limits are 0. */
  readonly limiter: RateLimiter | undefined;
  readonly streams: StreamSlots;
  /**
   * Resolves once the Redis connection is up, or after 1 s without it: the first sign-in after
   * a start must not fail only because this connection was still being made.
   */
  ready(): Promise<void>;
  close(): void;
}

export function createSecurity(config: Config): Security {
  const limited = config.RATE_LIMIT_KEY_RPS > 0 || config.RATE_LIMIT_IP_RPS > 0;
  // Dashboard sessions are recorded in Redis; with authentication off there are none.
  const redis =
    limited || !config.AUTH_DISABLED
      ? createRedis(config.redisUrl, "command", { commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS })
      : undefined;
  redis?.on("error", () => {});
  return {
    keys: new KeyRing(config.API_KEYS ?? []),
    sessions: new SessionStore(
      config.SESSION_SECRET,
      config.SESSION_TTL_SECONDS,
      config.AUTH_DISABLED ? undefined : redis,
      config.REDIS_KEY_PREFIX,
    ),
    limiter: limited && redis ? new RateLimiter(redis, config.REDIS_KEY_PREFIX) : undefined,
    streams: new StreamSlots(config.SSE_MAX_STREAMS, config.RETRY_AFTER_UNAVAILABLE_SECONDS),
    ready: async () => {
      if (redis) await waitReady(redis, 1000).catch(() => {});
    },
    close: () => redis?.disconnect(),
  };
}
