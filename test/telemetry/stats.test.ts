import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Redis } from "ioredis";
import { addTo, bucketOf, percentileOf, type Buckets } from "../../src/telemetry/histogram.js";
import { StatsReader } from "../../src/telemetry/stats-report.js";
import { StatsRecorder } from "../../src/telemetry/stats.js";
import { call, eventually } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { cleanupPrefix, REDIS_URL, uniquePrefix } from "../support/redis.js";
import { bearer, testKeys } from "../security/support.js";

describe("mergeable latency histograms", () => {
  it("percentiles of merged buckets are within one bucket (19%) of the exact ones", () => {
    const values = Array.from({ length: 5000 }, (_, i) => 0.5 + ((i * 7919) % 5000) / 10); // 0.5..500 ms
    const a: Buckets = new Map();
    const b: Buckets = new Map();
    values.forEach((v, i) => addTo(i % 2 ? a : b, bucketOf(v)));
    const merged: Buckets = new Map(a);
    for (const [k, n] of b) addTo(merged, k, n);
    const sorted = [...values].sort((x, y) => x - y);
    for (const p of [50, 95, 99]) {
      const exact = sorted[Math.ceil((p / 100) * sorted.length) - 1]!;
      const est = percentileOf(merged, p)!;
      assert.ok(Math.abs(est - exact) / exact < 0.19, `p${p}: ${est} vs ${exact}`);
    }
    assert.equal(percentileOf(new Map(), 50), undefined);
  });
});

describe("stats buckets in Redis", () => {
  const prefix = uniquePrefix("stats-unit");
  const redis = new Redis(REDIS_URL);
  after(async () => {
    redis.disconnect();
    await cleanupPrefix(prefix);
  });

  it("two recorders add up; the window and per-version breakdown read back exactly", async () => {
    const opts = { flushIntervalMs: 60_000, retentionSeconds: 3600, recentJobs: 50 };
    const r1 = new StatsRecorder(redis, prefix, opts);
    const r2 = new StatsRecorder(redis, prefix, opts);
    for (let i = 0; i < 30; i++) {
      const r = i % 3 === 0 ? r2 : r1;
      r.count("m", "1", "ok");
      r.observe("m", "1", "t", 10 + i);
      r.count("m", "1", i % 2 ? "p|yes" : "p|no");
      r.outcome(true);
    }
    r1.count("m", "2", "fail");
    r1.outcome(false);
    r2.count("", "", "req", 5);
    await Promise.all([r1.close(), r2.close()]);

    const reader = new StatsReader(redis, prefix);
    const s = await reader.report("5m", () => ({ task: "classification", labels: ["yes", "no"] }));
    assert.equal(s.completed, 30);
    assert.equal(s.failed, 1);
    assert.equal(s.requests.total, 5);
    assert.equal(s.latency_ms.total.count, 30);
    assert.equal(s.latency_ms.total.avg_ms, 24.5);
    const v1 = (
      s.models.m as { versions: Record<string, { predictions: { counts: Record<string, number> } }> }
    ).versions["1"]!;
    assert.deepEqual(v1.predictions.counts, { yes: 15, no: 15 });
    const recent = await reader.recentOutcomes(`${prefix}:{global}:recent-jobs`, 50, 60_000);
    assert.deepEqual(recent, { total: 31, failed: 1 });
    assert.ok((await redis.ttl(`${prefix}:{global}:stats:${Math.floor(Date.now() / 60_000)}`)) > 3600);
  });
});

describe("feedback on results", () => {
  const inferline = useInferline("feedback", {
    env: { MODELS: "sentiment,cars-mpg", STATS_FLUSH_INTERVAL_MS: "100" },
    worker: true,
  });

  it("counts the truth once per completed job and reports live accuracy next to training", async () => {
    const r = await call(
      inferline.url,
      "POST",
      "/api/ml/sentiment",
      { text: "what a lovely day" },
      { prefer: "wait=10" },
    );
    const id = r.body.job_id as string;
    assert.equal((r.body.result as { label: string }).label, "positive");
    const fb = (body: unknown, jobId = id) =>
      call(inferline.url, "POST", `/api/results/${jobId}/feedback`, body);

    assert.equal((await fb({ label: "joyful" })).status, 422); // not one of the model's labels
    assert.equal((await fb({ value: 3 })).status, 422); // a label model takes a label
    assert.equal((await fb({})).status, 400);
    const ok = await fb({ label: "positive" });
    assert.equal(ok.status, 201);
    assert.equal(ok.body.correct, true);
    assert.equal((await fb({ label: "negative" })).status, 409); // once per job
    assert.equal((await fb({ label: "positive" }, "sentiment.0123456789abcdef0123456789abcdef")).status, 404);

    const queued = await call(
      inferline.url,
      "POST",
      "/api/ml/cars-mpg?priority=low",
      {
        cylinders: 4,
        displacement_cu_in: 100,
        horsepower: 80,
        weight_lbs: 2200,
        acceleration_s: 16,
        model_year: 1981,
        origin: "Japan",
      },
      { prefer: "wait=10" },
    );
    const value = (queued.body.result as { value: number }).value;
    assert.equal((await fb({ value: value - 2 }, queued.body.job_id as string)).status, 201);

    type Models = Record<
      string,
      {
        versions: Record<
          string,
          { feedback: { live: Record<string, number>; training: { metrics?: object } } }
        >;
      }
    >;
    // Counts reach Redis with each process's next flush.
    const models = await eventually(async () => {
      const m = (await call(inferline.url, "GET", "/api/stats?window=5m")).body.models as Models;
      return m.sentiment && m["cars-mpg"]?.versions["1"]?.feedback.live.count ? m : undefined;
    });
    assert.deepEqual(models.sentiment!.versions["1"]!.feedback.live, { count: 1, accuracy: 1 });
    const car = models["cars-mpg"]!.versions["1"]!.feedback;
    assert.deepEqual(car.live, { count: 1, mae: 2, rmse: 2 });
    assert.ok(car.training.metrics, "training metrics from the manifest");
  });

  it("a regression truth far off is counted once; one beyond 1e12 is refused, naming the field", async () => {
    const r = await call(
      inferline.url,
      "POST",
      "/api/ml/cars-mpg",
      {
        cylinders: 8,
        displacement_cu_in: 350,
        horsepower: 160,
        weight_lbs: 4000,
        acceleration_s: 12,
        model_year: 1975,
        origin: "USA",
      },
      { prefer: "wait=10" },
    );
    const id = r.body.job_id as string;
    const predicted = (r.body.result as { value: number }).value;
    const fb = (body: unknown) => call(inferline.url, "POST", `/api/results/${id}/feedback`, body);

    for (const value of [1e13, -1e13]) {
      const refused = await fb({ value });
      assert.equal(refused.status, 400);
      const error = refused.body.error as { code: string; message: string; details: { field: string } };
      assert.equal(error.code, "invalid_parameter");
      assert.equal(error.details.field, "body.value");
      assert.match(error.message, /^body\.value /);
    }
    // Its squared error, about 1.6e19, is past what Redis adds as an integer.
    assert.equal((await fb({ value: 4e9 })).status, 201);

    type Stats = {
      submitted: number;
      models: Record<
        string,
        { submitted: number; versions: Record<string, { feedback: { live: Record<string, number> } }> }
      >;
    };
    const stats = async () => (await call(inferline.url, "GET", "/api/stats?window=5m")).body as Stats;
    const first = await eventually(async () => {
      const s = await stats();
      return s.models["cars-mpg"]?.versions["1"]?.feedback.live.count === 2 ? s : undefined;
    });
    const live = first.models["cars-mpg"]!.versions["1"]!.feedback.live;
    const off = 4e9 - predicted;
    assert.ok(Math.abs(live.mae! - (2 + off) / 2) < 1e-2, `mae ${live.mae}`);
    assert.ok(Math.abs(live.rmse! - Math.sqrt((4 + off * off) / 2)) / live.rmse! < 1e-9, `rmse ${live.rmse}`);
    // Flushes go on (every 100 ms): nothing is added twice.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const later = await stats();
    assert.equal(later.models["cars-mpg"]!.submitted, 2);
    assert.equal(later.submitted, first.submitted);
    assert.equal(later.models["cars-mpg"]!.versions["1"]!.feedback.live.count, 2);
  });
});

describe("feedback from callers sharing one job", () => {
  const keys = testKeys();
  const inferline = useInferline("feedback-callers", {
    env: { ...keys.env, MODELS: "sentiment", STATS_FLUSH_INTERVAL_MS: "100" },
    worker: true,
  });

  it("a caller answered from the cache gives its own feedback without taking the submitter's", async () => {
    const input = { text: "a cached and shared answer, wonderful" };
    const first = await call(inferline.url, "POST", "/api/ml/sentiment", input, {
      prefer: "wait=10",
      ...bearer(keys.predict),
    });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const id = first.body.job_id as string;
    // Another caller sends the same input: the cache answers it with the first caller's job.
    const second = await call(inferline.url, "POST", "/api/ml/sentiment", input, bearer(keys.admin));
    assert.equal(second.body.cached, true);
    assert.equal(second.body.job_id, id);

    const fb = (key: string, label: string) =>
      call(inferline.url, "POST", `/api/results/${id}/feedback`, { label }, bearer(key));
    assert.equal((await fb(keys.admin, "positive")).status, 201);
    const own = await fb(keys.predict, "negative");
    assert.equal(own.status, 201, JSON.stringify(own.body));
    assert.equal(own.body.correct, false);
    // Each caller still gives one feedback per job.
    const again = await fb(keys.admin, "negative");
    assert.equal(again.status, 409);
    assert.equal((again.body.error as { code: string }).code, "feedback_exists");
    assert.equal((await fb(keys.predict, "positive")).status, 409);

    type Live = { count: number; accuracy: number };
    const live = await eventually(async () => {
      const s = (await call(inferline.url, "GET", "/api/stats?window=5m", undefined, bearer(keys.admin)))
        .body as { models: Record<string, { versions: Record<string, { feedback: { live: Live } }> }> };
      const l = s.models.sentiment?.versions["1"]?.feedback.live;
      return l?.count === 2 ? l : undefined;
    });
    assert.deepEqual(live, { count: 2, accuracy: 0.5 });
  });
});
