import { existsSync, readFileSync } from "node:fs";
import { Redis } from "ioredis";

/** Removes every key under `prefix` (SCAN + UNLINK); never touches anyone else's keys. */
export async function cleanupPrefix(url: string, prefix: string): Promise<number> {
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  let removed = 0;
  try {
    let cursor = "0";
    do {
      const [next, keys] = await r.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
      cursor = next;
      if (keys.length) removed += await r.unlink(...keys);
    } while (cursor !== "0");
  } finally {
    r.disconnect();
  }
  return removed;
}

/** Number of keys under `prefix` (a full SCAN: call it a few times per run, not in a loop). */
export async function countPrefix(redis: Redis, prefix: string): Promise<number> {
  let n = 0;
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
    cursor = next;
    n += keys.length;
  } while (cursor !== "0");
  return n;
}

/** `INFO memory` used_memory in bytes. */
export async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info("memory");
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN);
}

/**
 * What a Redis server has run since it started, from `INFO commandstats`: `commands`, every
 * command, those scripts ran included, and `scripts`, the script calls among them (EVAL,
 * EVALSHA, FCALL and their read-only forms). Every client's, so read it while only the system
 * measured is busy.
 */
export async function commandCounts(redis: Redis): Promise<{ commands: number; scripts: number }> {
  const info = await redis.info("commandstats");
  let commands = 0;
  let scripts = 0;
  for (const [, name, calls] of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    commands += Number(calls);
    if (/^(eval|evalsha|fcall)(_ro)?$/.test(name!)) scripts += Number(calls);
  }
  return { commands, scripts };
}

export async function redisVersion(url: string): Promise<string> {
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    return /redis_version:(\S+)/.exec(await r.info("server"))?.[1] ?? "unknown";
  } catch {
    return "unknown";
  } finally {
    r.disconnect();
  }
}

/** The pid of the Redis server behind `url` when it runs on this machine (CPU accounting). */
export async function localRedisPid(url: string): Promise<number | undefined> {
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    const pid = Number(/process_id:(\d+)/.exec(await r.info("server"))?.[1]);
    return pid > 0 &&
      existsSync(`/proc/${pid}/cmdline`) &&
      readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("redis")
      ? pid
      : undefined;
  } catch {
    return undefined;
  } finally {
    r.disconnect();
  }
}
