import type { Redis } from "ioredis";
import { parseRedisUrl } from "./connection.js";

/**
 * Redis answered but refused what REDIS_URL asks of it: a wrong or missing password, an unknown
 * or disabled user, a database index it does not have. Waiting cannot fix that, so a process
 * that meets it at start fails with this instead of answering 503 (or waiting) for ever.
 */
export class RedisUrlError extends Error {
  override readonly name = "RedisUrlError";
}

const REFUSED =
  /\bWRONGPASS\b|\bNOAUTH\b|\bNOPERM\b|invalid password|DB index is out of range|invalid DB index/i;

/** Whether `err` is Redis refusing the URL's credentials or database (see RedisUrlError). */
export function refusesUrl(err: unknown): boolean {
  return err instanceof Error && REFUSED.test(err.message);
}

/** The error to stop a process with: names REDIS_URL and the server, never the password. */
export function redisUrlError(url: string, err: Error): RedisUrlError {
  const where = parseRedisUrl(url)
    .nodes.map((n) => `${n.host}:${n.port}`)
    .join(",");
  return new RedisUrlError(
    `Redis${where ? ` at ${where}` : ""} refused REDIS_URL: ${err.message.trim().replace(/\.?$/, ".")} ` +
      "Check the user, password and database index in REDIS_URL (redis://[user]:password@host:port[/db]).",
  );
}

/**
 * Waits up to `ms` for a connection just created: true once it is ready, false if Redis did not
 * answer in time (the connection keeps trying; the caller decides whether to wait on). Rejects
 * with RedisUrlError, after disconnecting the client, as soon as Redis refuses the URL's
 * credentials or database: ioredis would otherwise reconnect and be refused for ever, or (for a
 * database index out of range) carry on silently in database 0, among another deployment's keys.
 */
export async function connectAtBoot(redis: Redis, url: string, ms: number): Promise<boolean> {
  if (redis.status === "ready") return true;
  return new Promise<boolean>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      resolve(false);
    }, ms);
    const onReady = () => {
      cleanup();
      resolve(true);
    };
    const onError = (err: Error) => {
      if (!refusesUrl(err)) return;
      cleanup();
      redis.disconnect();
      reject(redisUrlError(url, err));
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off("ready", onReady);
      redis.off("error", onError);
    };
    redis.on("ready", onReady);
    redis.on("error", onError);
  });
}

/** What a Redis's INFO says about its memory. */
export interface RedisMemory {
  readonly policy: string;
  readonly usedBytes: number;
  /** 0: no limit. */
  readonly maxBytes: number;
}

/**
 * Redis's memory settings and use (from INFO, which an ACL user limited to its keys may still
 * run), or undefined when they cannot be read.
 */
export async function redisMemory(redis: Redis): Promise<RedisMemory | undefined> {
  try {
    const info = await redis.info("memory");
    const field = (name: string) => new RegExp(`^${name}:(\\S+)`, "m").exec(info)?.[1];
    const policy = field("maxmemory_policy");
    if (policy === undefined) return undefined;
    return {
      policy,
      usedBytes: Number(field("used_memory") ?? 0),
      maxBytes: Number(field("maxmemory") ?? 0),
    };
  } catch {
    return undefined;
  }
}

/** Redis's `maxmemory-policy`, or undefined when it cannot be read. */
export async function evictionPolicy(redis: Redis): Promise<string | undefined> {
  return (await redisMemory(redis))?.policy;
}

/**
 * Whether a Redis is at its `maxmemory`: under noeviction it then refuses every write (new jobs
 * are answered 503, workers cannot record results) until memory is freed or the limit raised.
 */
export function fullProblem(memory: RedisMemory | undefined): string | undefined {
  if (!memory || memory.maxBytes <= 0 || memory.usedBytes < memory.maxBytes) return undefined;
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `Redis is full (used_memory ${mib(memory.usedBytes)} of maxmemory ${mib(memory.maxBytes)}): it refuses new jobs`;
}

/**
 * What is wrong with a Redis's eviction policy for a job queue, if anything: under any policy but
 * `noeviction`, a Redis at its `maxmemory` deletes keys to make room, and those can be queued
 * jobs, their results or their locks (an accepted job lost without a trace).
 */
export function evictionProblem(policy: string | undefined): string | undefined {
  return policy === undefined || policy === "noeviction"
    ? undefined
    : `Redis maxmemory-policy is ${policy}, not noeviction: when full it evicts keys, which can be queued jobs`;
}

/**
 * The start-up check of a process's first Redis connection: waits up to `ms` for it (see
 * connectAtBoot; rejects with RedisUrlError when Redis refuses REDIS_URL), warns when Redis is
 * not there yet (`redis_unreachable`) or would evict keys (`redis_eviction_policy`), and resolves
 * with whether Redis answered.
 */
export async function checkRedisAtStart(
  redis: Redis,
  url: string,
  ms: number,
  logger: { warn(fields: object, msg: string): void },
  unreachable: string,
): Promise<boolean> {
  if (!(await connectAtBoot(redis, url, ms))) {
    logger.warn({ event: "redis_unreachable" }, unreachable);
    return false;
  }
  const policy = await evictionPolicy(redis);
  const problem = evictionProblem(policy);
  if (problem) logger.warn({ event: "redis_eviction_policy", policy }, `${problem}; set it to noeviction`);
  return true;
}

/** Thrown by untilReady when its signal fires first. */
export class StartCancelledError extends Error {
  override readonly name = "StartCancelledError";
}

/**
 * Resolves once `redis` is ready, however long that takes; rejects with StartCancelledError as
 * soon as `signal` fires (a SIGTERM while a process waits for Redis to start), and with
 * RedisUrlError if Redis refuses the URL meanwhile.
 */
export async function untilReady(redis: Redis, url: string, signal?: AbortSignal): Promise<void> {
  if (redis.status === "ready") return;
  if (signal?.aborted) throw new StartCancelledError("start cancelled while waiting for Redis");
  await new Promise<void>((resolve, reject) => {
    const onReady = () => {
      cleanup();
      resolve();
    };
    const onError = (err: Error) => {
      if (!refusesUrl(err)) return;
      cleanup();
      reject(redisUrlError(url, err));
    };
    const onAbort = () => {
      cleanup();
      reject(new StartCancelledError("start cancelled while waiting for Redis"));
    };
    const cleanup = () => {
      redis.off("ready", onReady);
      redis.off("error", onError);
      signal?.removeEventListener("abort", onAbort);
    };
    redis.on("ready", onReady);
    redis.on("error", onError);
    signal?.addEventListener("abort", onAbort);
  });
}
