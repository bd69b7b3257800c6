import { buildConfig, type Config } from "../../src/config/index.js";
import { REDIS_URL } from "./redis.js";

/**
 * A config for tests: the shared Redis, the test's own prefix, quiet logs, a free port, and
 * API keys and rate limits off.
 */
export function testConfig(prefix: string, overrides: Record<string, string> = {}): Config {
  return buildConfig({ ...testEnv(prefix), ...overrides });
}

export function testEnv(prefix: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: "test",
    REDIS_URL,
    REDIS_KEY_PREFIX: prefix,
    LOG_LEVEL: "silent",
    HOST: "127.0.0.1",
    PORT: "0",
    JOB_BACKOFF_MS: "50",
    WORKER_HEARTBEAT_INTERVAL_MS: "500",
    // No warm-up wait (tests that want one set it) and no worker metrics port (many workers per host).
    HEALTH_WARMUP_MS: "0",
    WORKER_METRICS_PORT: "0",
    // Keys and rate limits are tested in test/security; elsewhere they would only get in the way.
    AUTH_DISABLED: "true",
    RATE_LIMIT_KEY_RPS: "0",
    RATE_LIMIT_IP_RPS: "0",
    // Tests run the API in the same event loop as a thousand concurrent clients: give Redis calls
    // room before they count as "Redis unavailable" (an absent Redis still fails at once).
    REDIS_COMMAND_TIMEOUT_MS: "5000",
    ...overrides,
  };
}
