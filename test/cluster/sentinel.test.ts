import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { createRedis, waitReady } from "../../src/redis/connection.js";
import { testEnv } from "../support/config.js";
import { call, eventually, freePort } from "../support/http.js";
import { spawnCli, stop, type Spawned } from "../support/processes.js";

/** A redis-server on loopback with its data in `dir`; `extra` arguments after the usual ones. */
function redisServer(dir: string, port: number, ...extra: string[]): ChildProcess {
  return spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir, ...extra],
    { stdio: "ignore" },
  );
}

/** A Sentinel on loopback watching the master on `masterPort` as `name` (quorum 1, 2 s to down). */
function startSentinel(dir: string, port: number, name: string, masterPort: number): ChildProcess {
  const conf = path.join(dir, "sentinel.conf");
  writeFileSync(
    conf,
    [
      `port ${port}`,
      "bind 127.0.0.1",
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${masterPort} 1`,
      `sentinel down-after-milliseconds ${name} 2000`,
      "",
    ].join("\n"),
  );
  return spawn("redis-server", [conf, "--sentinel"], { stdio: "ignore" });
}

void describe("Redis behind Sentinel (REDIS_SENTINELS)", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "inferline-sentinel-"));
  const procs: ChildProcess[] = [];
  let sentinelPort = 0;
  let start: Spawned | undefined;

  before(async () => {
    const masterPort = await freePort();
    sentinelPort = await freePort();
    procs.push(redisServer(dir, masterPort), startSentinel(dir, sentinelPort, "inferline-main", masterPort));
  });

  after(async () => {
    if (start) await stop(start, 20_000);
    for (const p of procs) p.kill("SIGKILL");
    await sleep(100);
    rmSync(dir, { recursive: true, force: true });
  });

  void it("createRedis finds the master through the Sentinel", async () => {
    const url = `redis://127.0.0.1:${sentinelPort}?sentinel=inferline-main`;
    const redis = await eventually(
      async () => {
        const r = createRedis(url, "command");
        r.on("error", () => {});
        try {
          await waitReady(r, 1000);
          return r;
        } catch {
          r.disconnect();
          return undefined;
        }
      },
      15_000,
      200,
    );
    try {
      await redis.set("inferline-sentinel-probe", "ok", "EX", 10);
      assert.equal(await redis.get("inferline-sentinel-probe"), "ok");
      const role = (await redis.call("role")) as unknown[];
      assert.equal(role[0], "master");
    } finally {
      redis.disconnect();
    }
  });

  void it("inferline start serves predictions through REDIS_SENTINELS", async () => {
    start = spawnCli(
      ["start", "--workers", "1"],
      testEnv("inferline-sentinel", {
        LOG_LEVEL: "info",
        REDIS_URL: "",
        REDIS_SENTINELS: `127.0.0.1:${sentinelPort}`,
        REDIS_SENTINEL_NAME: "inferline-main",
        MODELS: "echo,sentiment",
        AUTOSCALE: "false",
      }),
    );
    const base = (await start.waitForLine((l) => l.event === "api_started", 30_000)).url as string;
    await start.waitForLine((l) => l.event === "worker_started", 30_000);
    await eventually(async () => (await call(base, "GET", "/health/ready")).status === 200, 15_000, 100);
    const r = await call(
      base,
      "POST",
      "/api/ml/sentiment",
      { text: "Sentinel works, great" },
      { prefer: "wait=10" },
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((r.body.result as { label: string }).label, "positive");
  });
});

void describe("a Sentinel switchover", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "inferline-failover-"));
  const procs: ChildProcess[] = [];
  let sentinelPort = 0;
  let masterPort = 0;
  let replicaPort = 0;

  before(async () => {
    masterPort = await freePort();
    replicaPort = await freePort();
    sentinelPort = await freePort();
    procs.push(
      redisServer(dir, masterPort),
      redisServer(dir, replicaPort, "--replicaof", "127.0.0.1", String(masterPort)),
      startSentinel(dir, sentinelPort, "inferline-ha", masterPort),
    );
  });

  after(async () => {
    for (const p of procs) p.kill("SIGKILL");
    await sleep(100);
    rmSync(dir, { recursive: true, force: true });
  });

  void it("moves every connection to the new master at once, not when the old one is demoted", async () => {
    const url = `redis://127.0.0.1:${sentinelPort}?sentinel=inferline-ha`;
    const port = async (r: Redis) => Number(/tcp_port:(\d+)/.exec(await r.info("server"))?.[1]);
    const sentinel = new Redis(sentinelPort, "127.0.0.1");
    const replica = new Redis(replicaPort, "127.0.0.1");
    const redis = createRedis(url, "blocking");
    redis.on("error", () => {});
    try {
      await waitReady(redis, 10_000);
      assert.equal(await port(redis), masterPort);
      // The replica must have caught up before Sentinel will promote it.
      await eventually(
        async () => /master_link_status:up/.test(await replica.info("replication")),
        15_000,
        200,
      );
      await eventually(
        async () => {
          try {
            await sentinel.call("SENTINEL", "FAILOVER", "inferline-ha");
            return true;
          } catch {
            return false; // NOGOODSLAVE until Sentinel has seen the replica
          }
        },
        15_000,
        500,
      );
      // Sentinel demotes the old master only seconds later; until then it still takes writes,
      // which it throws away when it resyncs as a replica: jobs answered 202, lost.
      await eventually(async () => (await port(redis).catch(() => 0)) === replicaPort, 4_000, 50);
      await redis.set("inferline-failover-probe", "ok", "EX", 10);
    } finally {
      redis.disconnect();
      sentinel.disconnect();
      replica.disconnect();
    }
  });
});
