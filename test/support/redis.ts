import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after } from "node:test";
import { Redis } from "ioredis";
import { redisAnswers } from "../../src/supervisor/local-redis.js";
import { freePort } from "./http.js";

/** The shared Redis tests run against (never flushed, never stopped). */
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** A key prefix of this test's own; `cleanupPrefix` deletes every key under it. */
export function uniquePrefix(label: string): string {
  return `t-${label}-${randomBytes(4).toString("hex")}`;
}

export async function cleanupPrefix(prefix: string, url = REDIS_URL): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

/**
 * Prefixes for the tests of one suite, each its own, all deleted after the suite: registers an
 * `after` hook in the calling describe and returns the function that hands out prefixes.
 */
export function suitePrefixes(): (label: string) => string {
  const prefixes: string[] = [];
  after(async () => {
    for (const p of prefixes) await cleanupPrefix(p);
  });
  return (label) => {
    const p = uniquePrefix(label);
    prefixes.push(p);
    return p;
  };
}

/** A command Redis ran: sent by a client, or called by a script (`fromScript`). */
export interface Ran {
  readonly args: string[];
  readonly fromScript: boolean;
}

/**
 * Runs `fn` and returns with it the commands the shared Redis ran meanwhile, from MONITOR.
 * Lines that reach the connection with MONITOR's own reply make ioredis report a "command queue
 * state" error before it switches to monitoring: they come before `fn` starts and are ignored.
 */
export async function monitorCommands<T>(fn: () => Promise<T>): Promise<{ result: T; commands: Ran[] }> {
  const monitor = new Redis(REDIS_URL, { monitor: true });
  const commands: Ran[] = [];
  monitor.on("error", () => {});
  monitor.on("monitor", (_time: string, args: string[], source: string) => {
    commands.push({ args, fromScript: source === "lua" });
  });
  try {
    await new Promise<void>((resolve) => monitor.once("monitoring", () => resolve()));
    const result = await fn();
    // MONITOR reports commands as Redis runs them: let the last ones arrive.
    await sleep(100);
    return { result, commands };
  } finally {
    monitor.disconnect();
  }
}

/**
 * A redis-server of the caller's own (free loopback port, own data folder), for tests and drills
 * that stop, restart or reconfigure Redis: the shared one is never touched.
 */
export interface OwnRedis {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** SIGTERM (Redis fsyncs its AOF and exits) or SIGKILL (a crash). */
  stop(signal?: NodeJS.Signals): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

export async function ownRedis(opts: { aof: boolean }): Promise<OwnRedis> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), "inferline-redis-"));
  let proc: ChildProcess | undefined;
  const url = `redis://127.0.0.1:${port}`;
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--save",
    "",
    ...(opts.aof ? ["--appendonly", "yes", "--appendfsync", "everysec"] : ["--appendonly", "no"]),
  ];
  const handle: OwnRedis = {
    url,
    port,
    dir,
    async start() {
      proc = spawn("redis-server", args, { stdio: "ignore" });
      const deadline = Date.now() + 10_000;
      for (;;) {
        if (await redisAnswers(url, 500)) return;
        if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start`);
        await sleep(50);
      }
    },
    async stop(signal = "SIGTERM") {
      const p = proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise<void>((r) => p.once("exit", () => r()));
      p.kill(signal);
      await exited;
    },
    async destroy() {
      await handle.stop("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await handle.start();
  return handle;
}
