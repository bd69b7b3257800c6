import type { Config } from "../config/index.js";
import type { Redis } from "ioredis";
import { KeyRing } from "./keys.js";
import { RateLimiter } from "./rate-limit.js";
import { SessionStore } from "./sessions.js";
import { StreamSlots } from "./streams.js";

export { allows, type Principal, type Scope } from "./keys.js";
export { addressCaller, type RateDecision, type RateRule } from "./rate-limit.js";
export { jsonTooDeep } from "./json-depth.js";
export { StreamSlots } from "./streams.js";

/**
 * What the API's protection layer works with: keys, sessions, shared rate limits, stream slots.
 * Sessions and rate limits use the API's command connection.
 */
export interface Security {
  readonly keys: KeyRing;
  readonly sessions: SessionStore;
  /** Undefined when both rate limits are 0. */
  readonly limiter: RateLimiter | undefined;
  readonly streams: StreamSlots;
}

export function createSecurity(config: Config, redis: Redis): Security {
  const limited = config.RATE_LIMIT_KEY_RPS > 0 || config.RATE_LIMIT_IP_RPS > 0;
  return {
    keys: new KeyRing(config.API_KEYS ?? []),
    // Dashboard sessions are recorded in Redis; with authentication off there are none.
    sessions: new SessionStore(
      config.SESSION_SECRET,
      config.SESSION_TTL_SECONDS,
      config.AUTH_DISABLED ? undefined : redis,
      config.REDIS_KEY_PREFIX,
    ),
    limiter: limited ? new RateLimiter(redis, config.REDIS_KEY_PREFIX) : undefined,
    streams: new StreamSlots(config.SSE_MAX_STREAMS, config.RETRY_AFTER_UNAVAILABLE_SECONDS),
  };
}
