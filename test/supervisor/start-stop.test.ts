import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { testEnv } from "../support/config.js";
import { spawnCli, stop, type Spawned } from "../support/processes.js";
import { ownRedis, uniquePrefix } from "../support/redis.js";

/** The pid of the redis-server at `url`, as it reports it. */
async function redisPid(url: string): Promise<number> {
  const client = new Redis(url);
  try {
    const info = await client.info("server");
    return Number(/process_id:(\d+)/.exec(info)?.[1]);
  } finally {
    client.disconnect();
  }
}

/** Resolves with the exit, or undefined if the process is still running after `ms`. */
async function exitWithin<T>(exited: Promise<T>, ms: number): Promise<T | undefined> {
  const ac = new AbortController();
  try {
    return await Promise.race([exited, sleep(ms, undefined, { signal: ac.signal }).catch(() => undefined)]);
  } finally {
    ac.abort();
  }
}

/** Kills any process that logged through `proc` (its children) and is still running. */
function killLeftovers(proc: Spawned): void {
  const pids = new Set(proc.lines.map((l) => l.pid).filter((p): p is number => typeof p === "number"));
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
}

describe("inferline start: stopping", () => {
  it("SIGTERM while Redis does not answer: the supervisor still stops its children and exits", async () => {
    const redis = await ownRedis({ aof: false });
    const proc = spawnCli(
      ["start", "--workers", "1"],
      testEnv(uniquePrefix("start-frozen"), {
        REDIS_URL: redis.url,
        MODELS: "echo",
        LOG_LEVEL: "info",
        AUTOSCALE_INTERVAL_MS: "200",
        REDIS_COMMAND_TIMEOUT_MS: "1000",
        WORKER_SHUTDOWN_TIMEOUT_MS: "2000",
        SHUTDOWN_TIMEOUT_MS: "1000",
      }),
    );
    let frozen: number | undefined;
    try {
      await proc.waitForLine((l) => l.event === "worker_started", 30_000);
      await proc.waitForLine((l) => l.event === "autoscaler_started");
      frozen = await redisPid(redis.url);
      process.kill(frozen, "SIGSTOP");
      // Long enough for an autoscaler reading to be waiting on the frozen Redis.
      await sleep(1000);
      proc.kill("SIGTERM");
      // A bound for "did not hang", far above what the shutdown steps' deadlines add up to.
      const exit = await exitWithin(proc.exited, 45_000);
      assert.ok(exit, "the supervisor exited");
      assert.equal(exit.code, 0);
      assert.ok(proc.lines.some((l) => l.event === "child_stopped" && l.child === "api"));
      assert.ok(proc.lines.some((l) => l.event === "child_stopped" && l.child === "worker-1"));
    } finally {
      if (frozen) process.kill(frozen, "SIGCONT");
      await stop(proc);
      killLeftovers(proc);
      await redis.destroy();
    }
  });
});
