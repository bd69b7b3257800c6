import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Redis } from "ioredis";
import type { ModelDescriptor } from "../../src/models/types.js";
import { Metrics } from "../../src/telemetry/metrics.js";
import { StatsReader } from "../../src/telemetry/stats-report.js";
import { StatsRecorder } from "../../src/telemetry/stats.js";
import { ApiTelemetry, WorkerTelemetry } from "../../src/telemetry/telemetry.js";
import { REDIS_URL, suitePrefixes } from "../support/redis.js";

const OPTS = { flushIntervalMs: 60_000, retentionSeconds: 3600, recentJobs: 100 };

/** Runs `fn` with Date.now reading `clock.ms`. */
async function atTime<T>(clock: { ms: number }, fn: () => Promise<T>): Promise<T> {
  const real = Date.now;
  Date.now = () => clock.ms;
  try {
    return await fn();
  } finally {
    Date.now = real;
  }
}

describe("stats reports", () => {
  const redis = new Redis(REDIS_URL);
  after(() => redis.disconnect());
  const prefixOf = suitePrefixes();

  it("rates divide by the time the window covers, not by whole minutes", async () => {
    const prefix = prefixOf("stats-rate");
    // A steady 10 jobs/s and 20 requests/s from a minute boundary ten minutes ago, for 5 min 6 s.
    const start = (Math.floor(Date.now() / 60_000) - 10) * 60_000;
    const clock = { ms: start };
    const stats = new StatsRecorder(redis, prefix, OPTS);
    const report = await atTime(clock, async () => {
      for (const end = start + 5 * 60_000 + 6000; clock.ms < end; clock.ms += 100) {
        stats.count("m", "1", "ok");
        stats.count("", "", "req", 2);
      }
      await stats.flush();
      return {
        exact: await new StatsReader(redis, prefix).report("5m"),
        lagging: await new StatsReader(redis, prefix, 4000).report("5m"),
      };
    });

    // The window is the four minutes before this one and the 6 s of this one so far.
    const { exact, lagging } = report;
    assert.equal(exact.completed, 2460);
    assert.equal(exact.throughput_per_s, 10);
    assert.equal(exact.requests.per_s, 20);
    assert.equal((exact.models.m as { throughput_per_s: number }).throughput_per_s, 10);
    // Counts reach Redis half a flush interval late on average: 2 s less is covered.
    assert.equal(lagging.throughput_per_s, Math.round((2460 / 244) * 1000) / 1000);
    // Whole minutes chart their rate; the current one has none until it is over.
    assert.deepEqual(
      exact.series.map((p) => p.throughput_per_s),
      [10, 10, 10, 10, null],
    );
    assert.deepEqual(
      exact.series.map((p) => p.completed),
      [600, 600, 600, 600, 60],
    );
  });

  it("a window longer than STATS_RETENTION_SECONDS covers the minutes kept, not expired ones read as idle", async () => {
    const prefix = prefixOf("stats-retention");
    // A steady 10 jobs/s for the last hour; with a 10-minute retention Redis kept only the
    // buckets of the last ten minutes and this one (6 s into it), so only those are written here.
    const boundary = Math.floor(Date.now() / 60_000) * 60_000;
    const clock = { ms: boundary - 10 * 60_000 };
    const stats = new StatsRecorder(redis, prefix, { ...OPTS, retentionSeconds: 600 });
    const r = await atTime(clock, async () => {
      for (; clock.ms < boundary + 6000; clock.ms += 100) stats.count("m", "1", "ok");
      await stats.flush();
      return new StatsReader(redis, prefix, 0, 600).report("1h");
    });
    assert.equal(r.window, "1h");
    assert.equal(r.minutes, 11);
    assert.equal(r.from, new Date(boundary - 10 * 60_000).toISOString());
    assert.equal(r.series.length, 11);
    assert.equal(r.completed, 6060);
    assert.equal(r.throughput_per_s, 10);
    // The default retention (24 h) keeps every minute of the longest window.
    assert.equal(new StatsReader(redis, prefix, 0, 86_400).keptMinutes() >= 1440, true);
    assert.equal(new StatsReader(redis, prefix, 0, 120).keptMinutes(), 3);
  });

  it("the minute that just ended charts no rate until every process has flushed its counts", async () => {
    const prefix = prefixOf("stats-rate-boundary");
    const flushIntervalMs = 5000;
    const boundary = Math.floor(Date.now() / 60_000) * 60_000;
    const clock = { ms: boundary - 60_000 };
    const stats = new StatsRecorder(redis, prefix, { ...OPTS, flushIntervalMs });
    const rates = await atTime(clock, async () => {
      const reader = new StatsReader(redis, prefix, flushIntervalMs);
      const lastTwo = async () => (await reader.report(2)).series.map((p) => p.throughput_per_s);
      // 10 jobs/s all through the minute; this process last flushed 4 s before it ended.
      for (; clock.ms < boundary - 4000; clock.ms += 100) stats.count("m", "1", "ok");
      await stats.flush();
      for (; clock.ms < boundary; clock.ms += 100) stats.count("m", "1", "ok");
      clock.ms = boundary + 1000;
      const early = await lastTwo();
      clock.ms = boundary + flushIntervalMs;
      await stats.flush();
      return { early, late: await lastTwo() };
    });
    // 560 of its 600 jobs are in Redis a second after the minute: no rate rather than 9.3/s.
    assert.deepEqual(rates.early, [null, null]);
    assert.deepEqual(rates.late, [10, null]);
  });

  it("a window that only just began has no rate yet", async () => {
    const prefix = prefixOf("stats-rate-new");
    const minuteStart = Math.floor(Date.now() / 60_000) * 60_000;
    const clock = { ms: minuteStart + 1000 };
    const stats = new StatsRecorder(redis, prefix, OPTS);
    const r = await atTime(clock, async () => {
      stats.count("m", "1", "ok");
      await stats.flush();
      return new StatsReader(redis, prefix, 5000).report(1);
    });
    assert.equal(r.completed, 1);
    assert.equal(r.throughput_per_s, null);
    assert.equal(r.requests.per_s, null);
  });

  it("feedback on a version the catalog no longer knows keeps its kind: errors, not accuracy", async () => {
    const prefix = prefixOf("stats-feedback");
    const stats = new StatsRecorder(redis, prefix, OPTS);
    const telemetry = new ApiTelemetry(new Metrics("api"), stats);
    for (const error of [1, -3]) telemetry.feedback("r", "1", { error });
    for (const correct of [true, false, true, true]) telemetry.feedback("c", "1", { correct });
    await stats.flush();
    type Live = { live: Record<string, number> };
    const live = (r: Awaited<ReturnType<StatsReader["report"]>>, model: string) =>
      (r.models[model] as { versions: Record<string, { feedback: Live }> }).versions["1"]!.feedback.live;
    const report = await new StatsReader(redis, prefix).report("5m");
    assert.deepEqual(live(report, "r"), { count: 2, mae: 2, rmse: 2.236 });
    assert.deepEqual(live(report, "c"), { count: 4, accuracy: 0.75 });
  });

  it("predictions count labels that had to be encoded: |, % and cut at 64 characters", async () => {
    const prefix = prefixOf("stats-labels");
    const long = `${"x".repeat(62)}|y`; // cut inside the escape of its "|"
    const labels = ["up|down", "50%", "ok", long];
    const d = { name: "m", version: "1", task: "classification", labels } as unknown as ModelDescriptor;
    const stats = new StatsRecorder(redis, prefix, OPTS);
    const telemetry = new WorkerTelemetry(new Metrics("worker"), stats);
    const timings = { waitMs: 1, inferenceMs: 1, totalMs: 2 };
    for (const [label, n] of [
      ["up|down", 3],
      ["50%", 2],
      ["ok", 1],
      [long, 1],
    ] as const)
      for (let i = 0; i < n; i++) telemetry.jobCompleted(d, timings, { label });
    await stats.flush();

    type Predictions = { count: number; counts: Record<string, number> };
    type Version = { predictions: Predictions; series: { predictions: Record<string, number> }[] };
    const version = (r: Awaited<ReturnType<StatsReader["report"]>>) =>
      (r.models.m as { versions: Record<string, Version> }).versions["1"]!;
    const reader = new StatsReader(redis, prefix);
    const described = version(await reader.report("5m", () => ({ task: "classification", labels })));
    assert.deepEqual(described.predictions.counts, { "up|down": 3, "50%": 2, ok: 1, [long]: 1 });
    assert.equal(described.predictions.count, 7);
    const minute = described.series.find((p) => Object.keys(p.predictions).length > 0)!.predictions;
    assert.equal(minute["up|down"], 3);
    assert.equal(minute["50%"], 2);
    // A version the catalog no longer knows: the labels seen, decoded where they can be.
    const seen = version(await reader.report("5m")).predictions.counts;
    assert.equal(seen["up|down"], 3);
    assert.equal(seen["50%"], 2);
    assert.equal(seen.ok, 1);
    assert.equal(
      Object.values(seen).reduce((a, b) => a + b, 0),
      7,
    );
  });
});
