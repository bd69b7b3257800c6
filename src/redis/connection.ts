import { Redis, type RedisOptions } from "ioredis";

export type RedisRole =
  /** Request-path commands: fail fast when Redis is away instead of queueing them. */
  | "command"
  /** Blocking readers (BullMQ Worker, QueueEvents): wait and reconnect for ever. */
  | "blocking";

/**
 * One factory for every Redis connection, so URLs with user, password and TLS (`rediss://`)
 * behave the same in the API, workers and supervisor.
 */
export function createRedis(url: string, role: RedisRole, extra: RedisOptions = {}): Redis {
  const base: RedisOptions = {
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    lazyConnect: false,
  };
  const byRole: RedisOptions =
    role === "command"
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1 }
      : { enableOfflineQueue: true, maxRetriesPerRequest: null };
  return new Redis(url, { ...base, ...byRole, ...extra });
}

/** Errors that mean "Redis is not there right now", as opposed to a bug or bad data. */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const text = `${err.name} ${err.message} ${(err as { code?: string }).code ?? ""}`;
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EHOSTUNREACH|Connection is closed|enableOfflineQueue|Command timed out|MaxRetriesPerRequest|LOADING|Stream isn't writeable|Reached the max retries|Connection timeout|BUSY/i.test(
    text,
  );
}

/** Resolves when the connection is ready or rejects after `ms`. */
export async function waitReady(redis: Redis, ms: number): Promise<void> {
  if (redis.status === "ready") return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis not ready after ${ms} ms`));
    }, ms);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off("ready", onReady);
    };
    redis.on("ready", onReady);
  });
}
