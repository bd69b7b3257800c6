import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Redis } from "ioredis";
import { WorkerRegistry } from "../../src/telemetry/workers.js";
import { testEnv } from "../support/config.js";
import { call, eventually } from "../support/http.js";
import { spawnCli, stop } from "../support/processes.js";
import { REDIS_URL, suitePrefixes } from "../support/redis.js";

describe("inferline start removes the heartbeat of a worker that died", () => {
  const prefix = suitePrefixes();

  it("PORT=0: an API restarted after kill -9 listens where the banner said", async () => {
    const proc = spawnCli(
      ["start", "--workers", "0"],
      testEnv(prefix("start-api-port"), { LOG_LEVEL: "info", SUPERVISOR_RESTART_BACKOFF_MS: "100" }),
    );
    try {
      const first = await proc.waitForLine((l) => l.event === "api_started", 30_000);
      await eventually(async () => /Inferline is up: (\S+)/.test(proc.stderr()), 10_000);
      const banner = /Inferline is up: (\S+)/.exec(proc.stderr())?.[1];
      assert.equal(banner, first.url);
      process.kill(first.pid as number, "SIGKILL");
      const second = await proc.waitForLine((l) => l.event === "api_started" && l.pid !== first.pid, 30_000);
      assert.equal(second.url, banner);
      assert.equal((await call(banner!, "GET", "/health/live")).status, 200);
      proc.kill("SIGTERM");
      assert.equal((await proc.exited).code, 0, proc.stderr().slice(-2000));
    } finally {
      await stop(proc, 30_000);
    }
  });

  it("kill -9 of a worker: health stops counting it at once, not when its record expires", async () => {
    const p = prefix("start-dead-beat");
    // Records live 3 heartbeat intervals (60 s here): only the supervisor's cleanup removes the
    // dead worker's within the test's bound.
    const interval = 20_000;
    const proc = spawnCli(
      ["start", "--workers", "2"],
      testEnv(p, {
        LOG_LEVEL: "info",
        MODELS: "echo",
        AUTOSCALE: "false",
        WORKER_HEARTBEAT_INTERVAL_MS: String(interval),
        SUPERVISOR_RESTART_BACKOFF_MS: "3000",
      }),
    );
    const redis = new Redis(REDIS_URL);
    const registry = new WorkerRegistry(redis, p, interval * 3);
    const livePids = async () => (await registry.list()).map((r) => r.pid).sort();
    const started = () => proc.lines.filter((l) => l.event === "worker_started");
    try {
      const api = await proc.waitForLine((l) => l.event === "api_started", 30_000);
      await eventually(async () => started().length >= 2, 30_000);
      const [victim, other] = started().map((l) => l.pid as number);
      await eventually(async () => (await livePids()).length === 2, 10_000);
      const health = async () =>
        (await call(api.url as string, "GET", "/health")).body as { system: { active_workers: number } };
      assert.equal((await health()).system.active_workers, 2, JSON.stringify(await health()));

      process.kill(victim!, "SIGKILL");
      const exited = await proc.waitForLine(
        (l) => l.event === "child_exited" && l.signal === "SIGKILL",
        10_000,
      );
      // Gone well before the record's 60 s, and before the replacement (3 s backoff) beats.
      const at = Date.now();
      await eventually(async () => !(await livePids()).includes(victim!), 2_000, 50);
      assert.ok(Date.now() - at < 2_500);
      assert.deepEqual(await livePids(), [other]);
      assert.equal(exited.restart_in_ms, 3000);
      // /health shares an evaluation for half a second.
      await eventually(async () => (await health()).system.active_workers === 1, 1_500, 100);

      // The replacement is counted once it beats.
      await eventually(async () => (await livePids()).length === 2, 30_000);
      proc.kill("SIGTERM");
      assert.equal((await proc.exited).code, 0, proc.stderr().slice(-2000));
    } finally {
      redis.disconnect();
      await stop(proc, 30_000);
    }
  });
});
