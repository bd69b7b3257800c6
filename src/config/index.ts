import { existsSync } from "node:fs";
import { config as loadDotenv } from "dotenv";
import { redisTargetUrl } from "../redis/connection.js";
import { type Env, parseEnv } from "./env.js";

export { ConfigError, ENV_SCHEMA, KEY_NAME, PACKAGE_ROOT, type Env } from "./env.js";

export type Config = Readonly<
  Env & {
    /** The Redis URL in use: REDIS_URL (or its cluster / sentinel form), or the local default. */
    redisUrl: string;
    /** True when a Redis was configured (then `start` never starts a redis-server of its own). */
    redisUrlFromEnv: boolean;
  }
>;

/** Builds the frozen config from an environment map (tests pass their own). */
export function buildConfig(source: Readonly<Record<string, string | undefined>>): Config {
  const env = parseEnv(source);
  return Object.freeze({
    ...env,
    MODELS: env.MODELS ? Object.freeze([...env.MODELS]) : undefined,
    // Cluster seed nodes or Sentinels become the URL form createRedis understands, so every
    // process (not only `start`) honours them.
    redisUrl: redisTargetUrl({
      url: env.REDIS_URL ?? `redis://127.0.0.1:${env.LOCAL_REDIS_PORT}`,
      clusterNodes: env.REDIS_CLUSTER_NODES,
      sentinels: env.REDIS_SENTINELS,
      sentinelName: env.REDIS_SENTINEL_NAME,
    }),
    redisUrlFromEnv:
      env.REDIS_URL !== undefined ||
      (env.REDIS_CLUSTER_NODES?.length ?? 0) > 0 ||
      (env.REDIS_SENTINELS?.length ?? 0) > 0,
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
