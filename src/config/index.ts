import { existsSync } from "node:fs";
import { config as loadDotenv } from "dotenv";
import { type Env, parseEnv } from "./env.js";

export { ConfigError, ENV_SCHEMA, PACKAGE_ROOT, type Env } from "./env.js";

export type Config = Readonly<
  Env & {
    /** The Redis URL in use: REDIS_URL, or the local default. */
    redisUrl: string;
    /** True when REDIS_URL was set (then `start` never starts a redis-server of its own). */
    redisUrlFromEnv: boolean;
  }
>;

/** Builds the frozen config from an environment map (tests pass their own). */
export function buildConfig(source: Readonly<Record<string, string | undefined>>): Config {
  const env = parseEnv(source);
  return Object.freeze({
    ...env,
    MODELS: env.MODELS ? Object.freeze([...env.MODELS]) : undefined,
    redisUrl: env.REDIS_URL ?? `redis://127.0.0.1:${env.LOCAL_REDIS_PORT}`,
    redisUrlFromEnv: env.REDIS_URL !== undefined,
  }) as Config;
}

/**
 * The one place that reads process.env: loads `.env` outside production (it never overrides
 * variables already set), then parses and freezes.
 */
export function loadConfig(): Config {
  if (process.env.NODE_ENV !== "production" && existsSync(".env")) {
    loadDotenv({ path: ".env", quiet: true });
  }
  return buildConfig(process.env);
}
