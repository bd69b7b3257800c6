import type { Config } from "../config/index.js";
import { createRedis } from "../redis/connection.js";
import { KeyRing } from "./keys.js";
import { RateLimiter } from "./rate-limit.js";
import { SessionSigner } from "./sessions.js";
import { StreamSlots } from "./streams.js";

export { allows, type Principal, type Scope } from "./keys.js";
export type { RateDecision, RateRule } from "./rate-limit.js";
export { jsonTooDeep } from "./json-depth.js";
export { StreamSlots } from "./streams.js";

/** What the API's protection layer works with: keys, sessions, shared rate limits, stream slots. */
export interface Security {
  readonly keys: KeyRing;
  readonly sessions: SessionSigner;
  /** Undefined when both rate limits are 0. */
  readonly limiter: RateLimiter | undefined;
  readonly streams: StreamSlots;
  close(): void;
}

export function createSecurity(config: Config): Security {
  const limited = config.RATE_LIMIT_KEY_RPS > 0 || config.RATE_LIMIT_IP_RPS > 0;
  const redis = limited
    ? createRedis(config.redisUrl, "command", { commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS })
    : undefined;
  redis?.on("error", () => {});
  return {
    keys: new KeyRing(config.API_KEYS ?? []),
    sessions: new SessionSigner(config.SESSION_SECRET, config.SESSION_TTL_SECONDS),
    limiter: redis ? new RateLimiter(redis, config.REDIS_KEY_PREFIX) : undefined,
    streams: new StreamSlots(config.SSE_MAX_STREAMS, config.RETRY_AFTER_UNAVAILABLE_SECONDS),
    close: () => redis?.disconnect(),
  };
}
