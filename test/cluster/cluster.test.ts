import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { createRedis, parseRedisUrl, redisTargetUrl, waitReady } from "../../src/redis/connection.js";
import { testEnv } from "../support/config.js";
import { call, canListen, eventually } from "../support/http.js";
import { spawnCli, stop, type Spawned } from "../support/processes.js";

/** Three ports whose cluster-bus ports (+10000) are free too. */
async function clusterPorts(): Promise<number[]> {
  for (;;) {
    // Below the ephemeral range (32768 up), bus ports included: no outgoing connection takes them.
    const base = 10_000 + Math.floor(Math.random() * 12_000);
    const ports = [base, base + 1, base + 2];
    const all = [...ports, ...ports.map((p) => p + 10_000)];
    if ((await Promise.all(all.map(canListen))).every(Boolean)) return ports;
  }
}

void describe("parseRedisUrl / redisTargetUrl", () => {
  void it("reads single, cluster and Sentinel forms", () => {
    assert.equal(parseRedisUrl("redis://127.0.0.1:6379").kind, "single");
    const c = parseRedisUrl("rediss://u:p%40ss@a:7000,b:7001?cluster=true");
    assert.equal(c.kind, "cluster");
    assert.deepEqual(c.nodes, [
      { host: "a", port: 7000 },
      { host: "b", port: 7001 },
    ]);
    assert.equal(c.password, "p@ss");
    assert.equal(c.username, "u");
    assert.equal(c.tls, true);
    const s = parseRedisUrl("redis://:secret@s1:26379,s2:26379?sentinel=main");
    assert.equal(s.kind, "sentinel");
    assert.equal(s.sentinelName, "main");
    assert.equal(s.password, "secret");
  });

  void it("builds the URL from REDIS_CLUSTER_NODES / REDIS_SENTINELS, keeping credentials", () => {
    assert.equal(redisTargetUrl({ url: "redis://127.0.0.1:6379" }), "redis://127.0.0.1:6379");
    assert.equal(
      redisTargetUrl({ url: "redis://:pw@127.0.0.1:6379", clusterNodes: ["a:1", "b:2"] }),
      "redis://:pw@a:1,b:2?cluster=true",
    );
    assert.equal(
      redisTargetUrl({ url: "rediss://127.0.0.1:6379", sentinels: ["s:26379"], sentinelName: "m" }),
      "rediss://s:26379?sentinel=m",
    );
  });
});

void describe("a 3-master Redis Cluster behind inferline start", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "inferline-cluster-"));
  const servers: ChildProcess[] = [];
  let ports: number[] = [];
  let start: Spawned;
  let base: string;

  before(async () => {
    ports = await clusterPorts();
    for (const port of ports) {
      const p = spawn(
        "redis-server",
        [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          `nodes-${port}.conf`,
          "--dir",
          dir,
          "--save",
          "",
          "--appendonly",
          "no",
        ],
        { stdio: "ignore" },
      );
      servers.push(p);
    }
    for (const port of ports) {
      await eventually(
        async () =>
          spawnSync("redis-cli", ["-p", String(port), "ping"])
            .stdout?.toString()
            .trim() === "PONG",
        10_000,
      );
    }
    const create = spawnSync(
      "redis-cli",
      [
        "--cluster",
        "create",
        ...ports.map((p) => `127.0.0.1:${p}`),
        "--cluster-replicas",
        "0",
        "--cluster-yes",
      ],
      { encoding: "utf8" },
    );
    assert.equal(create.status, 0, create.stdout + create.stderr);
    for (const port of ports) {
      await eventually(
        async () =>
          spawnSync("redis-cli", ["-p", String(port), "cluster", "info"], {
            encoding: "utf8",
          }).stdout.includes("cluster_state:ok"),
        15_000,
        100,
      );
    }
    const env = testEnv("inferline-cluster", {
      LOG_LEVEL: "info",
      REDIS_URL: "",
      REDIS_CLUSTER_NODES: ports.map((p) => `127.0.0.1:${p}`).join(","),
      MODELS: "echo,sentiment",
      AUTOSCALE: "false",
    });
    start = spawnCli(["start", "--workers", "2"], env);
    base = (await start.waitForLine((l) => l.event === "api_started", 30_000)).url as string;
    let started = 0;
    await start.waitForLine((l) => l.event === "worker_started" && ++started === 2, 30_000);
  });

  after(async () => {
    if (start) await stop(start, 20_000);
    for (const s of servers) s.kill("SIGKILL");
    await sleep(100);
    rmSync(dir, { recursive: true, force: true });
  });

  void it("serves predictions for two models whose queues live on the cluster", async () => {
    await eventually(async () => (await call(base, "GET", "/health/ready")).status === 200, 15_000, 100);
    const r1 = await call(
      base,
      "POST",
      "/api/ml/sentiment",
      { text: "I love this, it is great" },
      { prefer: "wait=10" },
    );
    assert.equal(r1.status, 200, JSON.stringify(r1.body));
    assert.equal((r1.body.result as { label: string }).label, "positive");
    const r2 = await call(base, "POST", "/api/ml/echo", { text: "over the cluster" }, { prefer: "wait=10" });
    assert.equal(r2.status, 200, JSON.stringify(r2.body));

    // Queued (202) jobs complete too, polled by id.
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) {
      const model = i % 2 ? "echo" : "sentiment";
      const r = await call(base, "POST", `/api/ml/${model}`, { text: `job ${i} is nice` });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      ids.push(r.body.job_id as string);
    }
    await eventually(
      async () => {
        for (const id of ids) {
          const g = await call(base, "GET", `/api/results/${id}`);
          if (g.status !== 200) return false;
          assert.equal(g.body.status, "completed");
        }
        return true;
      },
      30_000,
      200,
    );

    // The keys really are in the cluster, each queue's in the slot of its hash tag.
    const cluster = createRedis(`redis://127.0.0.1:${ports[0]}?cluster=true`, "command");
    try {
      await waitReady(cluster, 20_000);
      assert.equal(await cluster.ping(), "PONG");
      for (const model of ["echo", "sentiment"]) {
        const slot = String(await cluster.call("cluster", "keyslot", `{${model}}`));
        const keys = ports
          .map((p) =>
            Number(
              spawnSync("redis-cli", ["-p", String(p), "cluster", "countkeysinslot", slot], {
                encoding: "utf8",
              }).stdout,
            ),
          )
          .reduce((a, b) => a + b, 0);
        assert.ok(keys > 0, `slot ${slot} of {${model}} holds keys`);
      }
    } finally {
      cluster.disconnect();
    }
  });

  void it("a fail-fast command connection (no offline queue) gets ready on every try", async () => {
    // Its ready check once went to a node still connecting and looped on reconnects.
    for (let i = 0; i < 12; i++) {
      const c = createRedis(`redis://127.0.0.1:${ports[i % 3]}?cluster=true`, "command");
      try {
        await waitReady(c, 5_000);
        assert.equal(await c.ping(), "PONG");
      } finally {
        c.disconnect();
      }
    }
  });
});
