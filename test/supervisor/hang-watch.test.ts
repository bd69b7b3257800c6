import assert from "node:assert/strict";
import { hostname } from "node:os";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { pino } from "pino";
import { HangWatch, type WatchedChild } from "../../src/supervisor/hang-watch.js";
import { WorkerRegistry, type WorkerRecord } from "../../src/telemetry/workers.js";
import { testEnv } from "../support/config.js";
import { call, eventually } from "../support/http.js";
import { spawnCli, stop } from "../support/processes.js";
import { workerRecord } from "../support/workers.js";
import { ownRedis, REDIS_URL, suitePrefixes } from "../support/redis.js";

function record(pid: number): WorkerRecord {
  return workerRecord({ id: `${hostname()}:${pid}:test`, pid });
}

/** A HangWatch over `children` on the Redis at `url`, recording whom it kills. */
function watch(
  url: string,
  prefix: string,
  children: WatchedChild[],
  opts: { timeoutMs: number; graceMs: number },
) {
  const redis = new Redis(url, { commandTimeout: 500, maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  const registry = new WorkerRegistry(redis, prefix, 300);
  const killed: { pid: number; at: number }[] = [];
  const lines: Record<string, unknown>[] = [];
  const hang = new HangWatch({
    redis,
    prefix,
    registry,
    children: () => children,
    kill: (c) => killed.push({ pid: c.pid, at: Date.now() }),
    timeoutMs: opts.timeoutMs,
    startGraceMs: opts.graceMs,
    intervalMs: 100,
    logger: pino(
      { level: "info" },
      { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) },
    ),
  });
  hang.start();
  return {
    registry,
    killed,
    lines,
    async close() {
      await hang.stop();
      redis.disconnect();
    },
  };
}

describe("hang watch", () => {
  const prefix = suitePrefixes();

  it("kills a worker whose heartbeat stops, never one that keeps beating", async () => {
    const p = prefix("hang");
    const started = Date.now();
    const children = [
      { name: "worker-1", pid: 900_001, launchedAt: started },
      { name: "worker-2", pid: 900_002, launchedAt: started },
    ];
    const w = watch(REDIS_URL, p, children, { timeoutMs: 1000, graceMs: 60_000 });
    try {
      let hung = false;
      let done = false;
      const beating = (async () => {
        while (!done) {
          await w.registry.publish(record(900_001));
          if (!hung) await w.registry.publish(record(900_002));
          await sleep(100);
        }
      })();
      await sleep(1500);
      assert.equal(w.killed.length, 0, "both beat");
      const stoppedAt = Date.now();
      hung = true;
      await eventually(async () => w.killed.length > 0, 10_000, 50);
      await sleep(1200);
      done = true;
      await beating;
      assert.deepEqual(
        w.killed.map((k) => k.pid),
        [900_002],
      );
      assert.ok(
        w.killed[0]!.at - stoppedAt >= 900,
        `killed ${w.killed[0]!.at - stoppedAt} ms after its last beat`,
      );
      const line = w.lines.find((l) => l.event === "worker_hung");
      assert.equal(line?.child, "worker-2");
      assert.equal(line?.pid, 900_002);
      assert.equal(line?.had_heartbeat, true);
      assert.equal(line?.level, 50, "logged as an error");
    } finally {
      await w.close();
    }
  });

  it("gives a worker its start grace before its first heartbeat", async () => {
    const p = prefix("hang-grace");
    const launchedAt = Date.now();
    const w = watch(REDIS_URL, p, [{ name: "worker-1", pid: 900_003, launchedAt }], {
      timeoutMs: 500,
      graceMs: 3000,
    });
    try {
      await eventually(async () => w.killed.length > 0, 15_000, 50);
      assert.ok(
        w.killed[0]!.at - launchedAt >= 3000,
        `killed ${w.killed[0]!.at - launchedAt} ms after its launch`,
      );
      const line = w.lines.find((l) => l.event === "worker_hung");
      assert.equal(line?.had_heartbeat, false);
      assert.match(String(line?.msg), /no heartbeat within \d+ s of its launch/);
    } finally {
      await w.close();
    }
  });

  it("judges nobody while Redis is away, and gives every worker a full timeout once it is back", async () => {
    const redis = await ownRedis({ aof: false });
    const w = watch(redis.url, "hang-outage", [{ name: "worker-1", pid: 900_004, launchedAt: Date.now() }], {
      timeoutMs: 1500,
      graceMs: 60_000,
    });
    try {
      await w.registry.publish(record(900_004));
      await sleep(400);
      // Redis gone for longer than the timeout: the worker could not have beaten either.
      await redis.stop("SIGKILL");
      await sleep(3000);
      assert.equal(w.killed.length, 0, "nobody judged while Redis was away");
      // Redis answers at the earliest from here on.
      const restarting = Date.now();
      await redis.start();
      await eventually(async () => w.killed.length > 0, 15_000, 50);
      const after = w.killed[0]!.at - restarting;
      assert.ok(after >= 1500, `killed ${after} ms after Redis was started again`);
    } finally {
      await w.close();
      await redis.destroy();
    }
  });
});

describe("inferline start kills a hung worker", () => {
  const prefix = suitePrefixes();

  it("a stopped worker (SIGSTOP) is killed and replaced, and jobs are still served", async () => {
    const p = prefix("start-hang");
    const proc = spawnCli(
      ["start", "--workers", "2"],
      testEnv(p, {
        LOG_LEVEL: "info",
        MODELS: "echo",
        AUTOSCALE: "false",
        WORKER_HANG_TIMEOUT_MS: "4000",
        SUPERVISOR_RESTART_BACKOFF_MS: "100",
      }),
    );
    const started = () => proc.lines.filter((l) => l.event === "worker_started");
    let hungPid: number | undefined;
    try {
      const api = await proc.waitForLine((l) => l.event === "api_started", 30_000);
      await eventually(async () => started().length >= 2, 30_000);
      const [victim, other] = started().map((l) => l.pid as number);
      hungPid = victim;
      process.kill(victim!, "SIGSTOP");

      const hung = await proc.waitForLine((l) => l.event === "worker_hung", 30_000);
      assert.equal(hung.pid, victim);
      assert.equal(hung.had_heartbeat, true);
      const exited = await proc.waitForLine(
        (l) => l.event === "child_exited" && l.child === hung.child,
        10_000,
      );
      assert.equal(exited.signal, "SIGKILL");
      assert.throws(() => process.kill(victim!, 0), "the hung process is gone");
      // Replaced by a new process; the other worker was left alone.
      await eventually(async () => started().length >= 3, 30_000);
      assert.ok(!proc.lines.some((l) => l.event === "worker_hung" && l.pid === other));
      assert.equal(proc.proc.exitCode, null);

      for (let i = 0; i < 6; i++) {
        const r = await call(
          api.url as string,
          "POST",
          "/api/ml/echo",
          { text: `after ${i}` },
          { prefer: "wait=10" },
        );
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.status, "completed");
      }
      proc.kill("SIGTERM");
      assert.equal((await proc.exited).code, 0, proc.stderr().slice(-2000));
    } finally {
      if (hungPid !== undefined) {
        try {
          process.kill(hungPid, "SIGKILL");
        } catch {
          /* already gone */
        }
      }
      await stop(proc, 30_000);
    }
  });
});
