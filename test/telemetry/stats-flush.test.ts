import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { Metrics } from "../../src/telemetry/metrics.js";
import { StatsReader } from "../../src/telemetry/stats-report.js";
import { recentJobsKey, StatsRecorder, statsKey } from "../../src/telemetry/stats.js";
import { ApiTelemetry } from "../../src/telemetry/telemetry.js";
import { ownRedis, REDIS_URL, suitePrefixes, uniquePrefix } from "../support/redis.js";
import { delayingProxy } from "../support/redis-proxy.js";

async function okCount(redis: Redis, prefix: string): Promise<number> {
  const minute = Math.floor(Date.now() / 60_000);
  let n = 0;
  for (const m of [minute - 1, minute]) n += Number((await redis.hget(statsKey(prefix, m), "m|1|ok")) ?? 0);
  return n;
}

const OPTS = { flushIntervalMs: 60_000, retentionSeconds: 3600, recentJobs: 100 };

type Versions = Record<string, { versions: Record<string, { feedback: { live: Record<string, number> } }> }>;

describe("stats flushes: what Redis applied is never counted again", () => {
  const redis = new Redis(REDIS_URL);
  after(() => redis.disconnect());
  const prefixOf = suitePrefixes();

  it("a squared error past 2^63 is added as a float; the counts flushed with it stay exact", async () => {
    const prefix = prefixOf("stats-bigfloat");
    const errors: Error[] = [];
    const stats = new StatsRecorder(redis, prefix, OPTS, (e) => errors.push(e));
    const telemetry = new ApiTelemetry(new Metrics("api"), stats);
    // Feedback {"value": 4e9} on a prediction of 31.4 mpg: error² is about 1.6e19, a whole number.
    const error = 31.4 - 4e9;
    assert.ok(Number.isInteger(error * error) && error * error > 2 ** 63);
    telemetry.feedback("cars-mpg", "1", { error });
    for (let i = 0; i < 10; i++) telemetry.jobQueued("echo", "1");
    for (let f = 0; f < 4; f++) await stats.flush();

    const s = await new StatsReader(redis, prefix).report("5m", (model) =>
      model === "cars-mpg" ? { task: "regression" } : undefined,
    );
    assert.deepEqual(errors, []);
    assert.equal(s.submitted, 10);
    const live = (s.models as Versions)["cars-mpg"]!.versions["1"]!.feedback.live;
    assert.equal(live.count, 1);
    assert.ok(Math.abs(live.mae! - Math.abs(error)) < 1e-3, `mae ${live.mae}`);
    assert.ok(Math.abs(live.rmse! - Math.abs(error)) / Math.abs(error) < 1e-9, `rmse ${live.rmse}`);
  });

  it("a sum that is whole in one flush goes into a field another flush made fractional", async () => {
    const prefix = prefixOf("stats-wholesum");
    const errors: Error[] = [];
    const stats = new StatsRecorder(redis, prefix, OPTS, (e) => errors.push(e));
    stats.observe("m", "1", "t", 1.5);
    await stats.flush();
    stats.observe("m", "1", "t", 2);
    stats.count("m", "1", "ok", 2);
    await stats.flush();
    await stats.flush();
    const s = await new StatsReader(redis, prefix).report("5m");
    assert.deepEqual(errors, []);
    assert.equal(s.latency_ms.total.count, 2);
    assert.equal(s.latency_ms.total.avg_ms, 1.75);
    assert.equal(s.completed, 2);
  });

  it("a command Redis refuses for good loses its own counts only, and only once", async () => {
    const prefix = prefixOf("stats-refused");
    // The recent-jobs list is a string here: every LPUSH into it fails with WRONGTYPE.
    await redis.set(recentJobsKey(prefix), "not a list");
    const errors: Error[] = [];
    const stats = new StatsRecorder(redis, prefix, OPTS, (e) => errors.push(e));
    for (let i = 0; i < 5; i++) {
      stats.count("m", "1", "ok");
      stats.outcome(true);
    }
    await stats.flush();
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.message, /WRONGTYPE/);
    // Nothing is left to send: later flushes neither fail again nor add the counts again.
    await stats.flush();
    await stats.flush();
    assert.equal(errors.length, 1);
    const s = await new StatsReader(redis, prefix).report("5m");
    assert.equal(s.completed, 5);
  });

  it("commands Redis refused for now (out of memory) go out again with the next flush", async () => {
    const own = await ownRedis({ aof: false });
    const client = new Redis(own.url);
    const prefix = uniquePrefix("stats-oom");
    try {
      const errors: Error[] = [];
      const stats = new StatsRecorder(client, prefix, OPTS, (e) => errors.push(e));
      for (let i = 0; i < 3; i++) {
        stats.count("m", "1", "ok");
        stats.observe("m", "1", "t", 10.5);
        stats.outcome(true);
      }
      await client.config("SET", "maxmemory", "1");
      await stats.flush();
      assert.match(errors[0]?.message ?? "", /OOM/);
      await client.config("SET", "maxmemory", "0");
      await stats.flush();
      await stats.flush();
      assert.equal(errors.length, 1);
      const reader = new StatsReader(client, prefix);
      const s = await reader.report("5m");
      assert.equal(s.completed, 3);
      assert.equal(s.latency_ms.total.count, 3);
      assert.equal(s.latency_ms.total.avg_ms, 10.5);
      assert.deepEqual(await reader.recentOutcomes(recentJobsKey(prefix), 100, 60_000), {
        total: 3,
        failed: 0,
      });
    } finally {
      client.disconnect();
      await own.destroy();
    }
  });

  it("a flush that timed out may have run: it is not sent again", async () => {
    const prefix = prefixOf("stats-timeout");
    const proxy = await delayingProxy(new URL(REDIS_URL));
    // The API's connection: fail fast, and give up on a command after commandTimeout.
    const slow = new Redis(proxy.url, {
      commandTimeout: 200,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
    });
    try {
      await new Promise((resolve) => slow.once("ready", resolve));
      const errors: Error[] = [];
      const stats = new StatsRecorder(slow, prefix, OPTS, (e) => errors.push(e));
      for (let i = 0; i < 10; i++) {
        stats.count("m", "1", "ok");
        stats.outcome(true);
      }
      proxy.replyDelay.ms = 600;
      await stats.flush();
      assert.match(errors[0]?.message ?? "", /timed out/);
      // The late answers arrive; Redis is quick again.
      await sleep(700);
      proxy.replyDelay.ms = 0;
      await stats.flush();
      assert.equal(errors.length, 1);
      assert.equal(await okCount(redis, prefix), 10);
      assert.equal(await redis.llen(recentJobsKey(prefix)), 10);
    } finally {
      slow.disconnect();
      proxy.server.close();
    }
  });

  it("a flush Redis ran whose answer the network lost is not applied again when resent", async () => {
    const prefix = prefixOf("stats-resent");
    const proxy = await delayingProxy(new URL(REDIS_URL));
    // A worker's connection: commands wait for Redis, and what went unanswered is sent again.
    const client = new Redis(proxy.url, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
    client.on("error", () => {});
    try {
      await new Promise((resolve) => client.once("ready", resolve));
      const errors: Error[] = [];
      const stats = new StatsRecorder(client, prefix, OPTS, (e) => errors.push(e));
      for (let i = 0; i < 10; i++) {
        stats.count("m", "1", "ok");
        stats.outcome(true);
      }
      proxy.replyDelay.ms = 60_000;
      const flushed = stats.flush();
      // Redis has run the flush; its answer is held back, then the connection drops.
      while ((await okCount(redis, prefix)) < 10) await sleep(10);
      proxy.replyDelay.ms = 0;
      proxy.dropConnections();
      await flushed;
      stats.count("m", "1", "ok");
      await stats.flush();
      assert.deepEqual(errors, []);
      assert.equal(await okCount(redis, prefix), 11);
      assert.equal(await redis.llen(recentJobsKey(prefix)), 10);
    } finally {
      client.disconnect();
      proxy.server.close();
    }
  });

  it("counts a stopped Redis never received go out, once, when it is back", async () => {
    const own = await ownRedis({ aof: false });
    const client = new Redis(own.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      retryStrategy: () => 50,
    });
    client.on("error", () => {});
    const prefix = uniquePrefix("stats-away");
    try {
      await new Promise((resolve) => client.once("ready", resolve));
      const stats = new StatsRecorder(client, prefix, OPTS);
      for (let i = 0; i < 4; i++) {
        stats.count("m", "1", "ok");
        stats.outcome(true);
      }
      await own.stop();
      while (client.status === "ready") await sleep(20);
      await stats.flush();
      stats.count("m", "1", "ok");
      await stats.flush();
      await own.start();
      await new Promise((resolve) =>
        client.status === "ready" ? resolve(undefined) : client.once("ready", resolve),
      );
      await stats.flush();
      await stats.flush();
      assert.equal(await okCount(client, prefix), 5);
      assert.equal(await client.llen(recentJobsKey(prefix)), 4);
    } finally {
      client.disconnect();
      await own.destroy();
    }
  });
});
