import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { buildConfig } from "../../src/config/index.js";
import {
  Autoscaler,
  decide,
  INITIAL_STATE,
  type ScalePolicy,
  type ScaleState,
} from "../../src/supervisor/autoscaler.js";
import type { Logger } from "../../src/telemetry/logger.js";
import { scalePolicy } from "../../src/supervisor/start.js";
import { WorkerRegistry } from "../../src/telemetry/workers.js";
import { testEnv } from "../support/config.js";
import { call, eventually } from "../support/http.js";
import { spawnCli, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, REDIS_URL, uniquePrefix } from "../support/redis.js";

const policy: ScalePolicy = {
  min: 2,
  max: 10,
  intervalMs: 30_000,
  rateWindowMs: 30_000,
  upDepth: 50,
  upDrainSeconds: 60,
  upStep: 2,
  downDepth: 10,
  downAfterMs: 300_000,
  downStep: 2,
  cooldownMs: 60_000,
};

/** Feeds samples 30 s apart; returns the worker count after each. */
function run(samples: readonly [depth: number, processed: number][], start = 2, p = policy): number[] {
  let state: ScaleState = INITIAL_STATE;
  let current = start;
  return samples.map(([depth, processed], i) => {
    const d = decide(p, state, { at: i * 30_000, depth, processed }, current);
    state = d.state;
    current = d.target;
    return current;
  });
}

void describe("autoscaler decisions", () => {
  void it("adds upStep workers when the queue is deep, waits out the cooldown, stops at max", () => {
    // 30 s apart, cooldown 60 s: a step at most every other sample.
    const counts = run(Array.from({ length: 12 }, (_, i) => [500, i * 1000] as [number, number]));
    assert.deepEqual(counts, [4, 4, 6, 6, 8, 8, 10, 10, 10, 10, 10, 10]);
  });

  void it("holds between the thresholds (hysteresis) and scales down only after a sustained quiet period", () => {
    const p = { ...policy, cooldownMs: 0 };
    // 30 over 30 s → steady at 6; then shallow (5) for 5 minutes → -2, another 5 minutes → -2.
    const steady = run(
      [
        [30, 0],
        [30, 1000],
        [30, 2000],
      ],
      6,
      p,
    );
    assert.deepEqual(steady, [6, 6, 6]);
    const quiet = run(
      Array.from({ length: 22 }, (_, i) => [5, i * 1000] as [number, number]),
      6,
      p,
    );
    assert.equal(quiet[9], 6, "not before 5 minutes");
    assert.equal(quiet[10], 4, "after 5 minutes under the threshold");
    assert.equal(quiet[20], 2);
    assert.equal(quiet[21], 2, "never below min");
  });

  void it("a single deep sample resets the quiet period", () => {
    const p = { ...policy, cooldownMs: 0, max: 4 };
    const samples: [number, number][] = Array.from({ length: 16 }, (_, i) => [5, i * 1000]);
    samples[8] = [100, 8000];
    const counts = run(samples, 4, p);
    assert.ok(
      counts.every((c) => c === 4),
      `no scale-down: ${counts.join(",")}`,
    );
  });

  void it("scales up on time to drain even when the queue is shorter than upDepth", () => {
    // 40 queued, 30 processed in 30 s → 1 job/s → 40 s: fine. 40 queued, 3 processed → 400 s: too slow.
    assert.deepEqual(
      run([
        [40, 0],
        [40, 30],
      ]),
      [2, 2],
    );
    assert.deepEqual(
      run([
        [40, 0],
        [40, 3],
      ]),
      [2, 4],
    );
    const d = decide(
      policy,
      { ...INITIAL_STATE, previous: { at: 0, depth: 40, processed: 0 } },
      { at: 30_000, depth: 40, processed: 0 },
      2,
    );
    assert.equal(d.drainSeconds, Infinity);
    assert.equal(d.reason, "drain_slow");
  });

  void it("checking more often than workers heartbeat does not read a steady queue as stalled", () => {
    // Samples every second; the processed counter moves only with heartbeats, every 5 s (500
    // jobs each: 100 jobs/s); 15 queued, gone in a fraction of a second at that rate.
    const p = scalePolicy(
      buildConfig({
        AUTOSCALE_INTERVAL_MS: "1000",
        WORKER_HEARTBEAT_INTERVAL_MS: "5000",
        AUTOSCALE_MIN_WORKERS: "2",
        AUTOSCALE_MAX_WORKERS: "10",
      }),
      2,
    );
    let state: ScaleState = INITIAL_STATE;
    const steps: string[] = [];
    for (let at = 0; at <= 600_000; at += 1000) {
      const d = decide(p, state, { at, depth: 15, processed: Math.floor(at / 5000) * 500 }, 2);
      state = d.state;
      if (d.target !== 2) steps.push(`${at / 1000} s: ${d.reason}, drain ${d.drainSeconds} s`);
    }
    assert.deepEqual(steps, []);
    assert.ok(state.rate !== undefined && state.rate > 50 && state.rate < 200, `rate ${state.rate}`);
  });

  void it("never scales down while the queue is deep", () => {
    // Even with thresholds the config would refuse (down above up): at max, a deep queue holds.
    const p = { ...policy, upDepth: 5, downDepth: 20, cooldownMs: 0, downAfterMs: 30_000 };
    const counts = run(
      Array.from({ length: 10 }, (_, i) => [8, i * 1000] as [number, number]),
      10,
      p,
    );
    assert.ok(
      counts.every((c) => c === 10),
      counts.join(","),
    );
  });

  void it("brings a count outside the bounds back at once", () => {
    assert.equal(decide(policy, INITIAL_STATE, { at: 0, depth: 0, processed: 0 }, 1).target, 2);
    assert.equal(decide(policy, INITIAL_STATE, { at: 0, depth: 0, processed: 0 }, 14).target, 10);
  });
});

void describe("autoscaler without its readings", () => {
  void it("says once that it cannot read the queues, once that it can again, and holds the count", async () => {
    const lines: { level: string; event?: unknown }[] = [];
    const log = (level: string) => (o: { event?: unknown }) => lines.push({ level, ...o });
    const logger = { warn: log("warn"), debug: log("debug"), info: log("info") } as unknown as Logger;
    let readable = false;
    let scaled = 0;
    const autoscaler = new Autoscaler({
      policy,
      logger,
      sample: async () => {
        if (!readable) throw new Error("Stream isn't writeable and enableOfflineQueue options is false");
        return { at: Date.now(), depth: 0, processed: 0 };
      },
      current: () => 2,
      scaleTo: async () => void scaled++,
    });
    for (let i = 0; i < 4; i++) assert.equal(await autoscaler.tick(), undefined);
    readable = true;
    await autoscaler.tick();
    await autoscaler.tick();
    const failed = lines.filter((l) => l.event === "autoscale_sample_failed");
    assert.deepEqual(
      failed.map((l) => l.level),
      ["warn", "debug", "debug", "debug"],
    );
    assert.deepEqual(
      lines.filter((l) => l.event === "autoscale_sample_restored").map((l) => l.level),
      ["info"],
    );
    assert.equal(scaled, 0);
  });
});

interface ScaleEvent {
  from: number;
  to: number;
  reason: string;
}

void describe("inferline start scales real worker processes", () => {
  const prefix = uniquePrefix("autoscale");
  let start: Spawned;
  let base: string;
  let redis: Redis;

  before(async () => {
    redis = new Redis(REDIS_URL);
    start = spawnCli(
      ["start", "--workers", "1"],
      testEnv(prefix, {
        LOG_LEVEL: "info",
        MODELS: "echo",
        WORKER_CONCURRENCY: "2",
        WORKER_SHUTDOWN_TIMEOUT_MS: "15000",
        AUTOSCALE_INTERVAL_MS: "250",
        AUTOSCALE_MIN_WORKERS: "1",
        AUTOSCALE_MAX_WORKERS: "3",
        AUTOSCALE_UP_QUEUE_DEPTH: "20",
        AUTOSCALE_UP_DRAIN_SECONDS: "3600",
        AUTOSCALE_UP_STEP: "2",
        AUTOSCALE_DOWN_QUEUE_DEPTH: "3",
        AUTOSCALE_DOWN_AFTER_MS: "1500",
        AUTOSCALE_DOWN_STEP: "1",
        AUTOSCALE_COOLDOWN_MS: "1000",
      }),
    );
    const started = await start.waitForLine((l) => l.event === "api_started", 30_000);
    base = started.url as string;
    await start.waitForLine((l) => l.event === "worker_started", 30_000);
  });

  after(async () => {
    await stop(start, 30_000);
    redis.disconnect();
    await cleanupPrefix(prefix);
  });

  void it("scales up under a burst, drains back to min when idle, loses no job", async () => {
    const registry = new WorkerRegistry(redis, prefix, 1500);
    const ids: string[] = [];
    const submit = async (input: Record<string, unknown>) => {
      const r = await call(base, "POST", "/api/ml/echo", input);
      assert.equal(r.status, 202, JSON.stringify(r.body));
      ids.push(r.body.job_id as string);
    };

    // Burst: 1 worker × 2 jobs per 100 ms cannot keep up with 300 queued jobs.
    for (let i = 0; i < 300; i++) await submit({ text: `burst ${i}`, sleep_ms: 100 });
    const up = await start.waitForLine((l) => l.event === "autoscale" && l.to === 3, 20_000);
    assert.equal(up.from, 1);
    assert.ok(["queue_deep", "drain_slow"].includes(up.reason as string), String(up.reason));
    await eventually(
      async () => (await registry.list()).filter((w) => w.state === "running").length === 3,
      20_000,
    );

    // While scaling down, keep long jobs in hand so that drained workers hold some of them.
    let trickle = true;
    const trickling = (async () => {
      // Each input its own: identical ones would join a job in flight, or find it just finished.
      for (let n = 0; trickle; n++) {
        await submit({ text: `long ${n}`, sleep_ms: 600 });
        await sleep(300);
      }
    })();
    try {
      await start.waitForLine((l) => l.event === "autoscale" && l.to === 1, 60_000);
    } catch (err) {
      const seen = start.lines.filter((l) => l.event === "autoscale");
      throw new Error(`no scale-down to 1; steps: ${JSON.stringify(seen)}`, { cause: err });
    } finally {
      trickle = false;
      await trickling;
    }
    await start.waitForLine((l) => l.event === "worker_draining", 5_000);

    // Every accepted job completes: none was lost by a draining worker.
    await eventually(
      async () => {
        for (const id of ids) {
          const r = await call(base, "GET", `/api/results/${id}`);
          if (r.status !== 200) return false;
          assert.equal(r.body.status, "completed", JSON.stringify(r.body));
        }
        return true;
      },
      60_000,
      500,
    );

    const events = start.lines.filter((l) => l.event === "autoscale") as unknown as ScaleEvent[];
    assert.ok(events.length >= 3, JSON.stringify(events));
    for (const e of events) assert.ok(e.to >= 1 && e.to <= 3, `within bounds: ${JSON.stringify(e)}`);
    assert.ok(events.some((e) => e.reason === "queue_shallow" && e.to === 2));
    // Idle at min: no further step down.
    await sleep(2500);
    const later = start.lines.filter((l) => l.event === "autoscale");
    assert.equal(later.length, events.length);
    await eventually(
      async () => (await registry.list()).filter((w) => w.state === "running").length === 1,
      20_000,
    );
  });
});
