import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { testConfig, testEnv } from "../support/config.js";
import { call } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { spawnWorker, stop } from "../support/processes.js";

describe("queue semantics", () => {
  const inferline = useInferline("queue");

  it("2,000 concurrent submits get 2,000 distinct job ids", async () => {
    const replies = await Promise.all(
      Array.from({ length: 2000 }, (_, i) => call(inferline.url, "POST", "/api/ml/echo", { value: i })),
    );
    assert.ok(replies.every((r) => r.status === 202));
    const ids = new Set(replies.map((r) => r.body.job_id as string));
    assert.equal(ids.size, 2000);
    // Each id holds the input it was given: no two submits shared a job.
    const sample = replies.filter((_, i) => i % 400 === 0);
    for (const r of sample) {
      const g = await call(inferline.url, "GET", `/api/results/${String(r.body.job_id)}`);
      assert.equal(g.body.status, "queued");
    }
    // Not left for later tests' workers.
    const { Redis } = await import("ioredis");
    const redis = new Redis(testConfig(inferline.prefix).redisUrl);
    await redis.del(`${inferline.prefix}:{echo}:prioritized`);
    redis.disconnect();
  });

  it("cancels a queued job; a canceled or finished job cannot be canceled again", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/sentiment", { text: "cancel me" });
    const id = r.body.job_id as string;
    const d = await call(inferline.url, "DELETE", `/api/results/${id}`);
    assert.equal(d.status, 200);
    assert.equal(d.body.status, "canceled");
    const g = await call(inferline.url, "GET", `/api/results/${id}`);
    assert.equal(g.status, 200);
    assert.equal(g.body.status, "canceled");
    const again = await call(inferline.url, "DELETE", `/api/results/${id}`);
    assert.equal(again.status, 200);
    const missing = await call(
      inferline.url,
      "DELETE",
      "/api/results/sentiment.00000000000000000000000000000000",
    );
    assert.equal(missing.status, 404);
  });

  it("runs high-priority jobs queued behind low ones first, and a canceled job never runs", async () => {
    const lows = [];
    for (let i = 0; i < 4; i++)
      lows.push(await call(inferline.url, "POST", "/api/ml/sentiment?priority=low", { text: `low ${i}` }));
    const canceled = await call(inferline.url, "POST", "/api/ml/sentiment?priority=high", { text: "never" });
    await call(inferline.url, "DELETE", `/api/results/${String(canceled.body.job_id)}`);
    const highs = [];
    for (let i = 0; i < 4; i++)
      highs.push(await call(inferline.url, "POST", "/api/ml/sentiment?priority=high", { text: `high ${i}` }));
    const normal = await call(inferline.url, "POST", "/api/ml/sentiment", { text: "normal" });

    const worker = await spawnWorker(testEnv(inferline.prefix), [
      "--models",
      "sentiment",
      "--concurrency",
      "1",
    ]);
    try {
      const order: string[] = [];
      for (const r of [...lows, ...highs, normal]) {
        const g = await call(inferline.url, "GET", `/api/results/${String(r.body.job_id)}`, undefined, {
          prefer: "wait=20",
        });
        assert.equal(g.body.status, "completed");
        order.push(g.body.finished_at as string);
      }
      const started = worker.lines.filter((l) => l.event === "job_started").map((l) => l.job_id);
      const idx = (r: { body: Record<string, unknown> }) => started.indexOf(r.body.job_id);
      assert.equal(started.length, 9);
      assert.ok(!started.includes(canceled.body.job_id), "canceled job never ran");
      for (const h of highs) for (const l of lows) assert.ok(idx(h) < idx(l), "high before low");
      for (const l of lows) assert.ok(idx(normal) < idx(l), "normal before low");
      for (const h of highs) assert.ok(idx(h) < idx(normal), "high before normal");
      // FIFO within a priority.
      assert.deepEqual(
        highs.map(idx),
        [...highs.map(idx)].sort((a, b) => a - b),
      );
    } finally {
      await stop(worker);
    }
  });

  it("a running job cannot be canceled (409)", async () => {
    const worker = await spawnWorker(testEnv(inferline.prefix), ["--models", "echo"]);
    try {
      const r = await call(inferline.url, "POST", "/api/ml/echo", { text: "busy", sleep_ms: 1500 });
      const id = r.body.job_id as string;
      for (let i = 0; i < 100; i++) {
        if ((await call(inferline.url, "GET", `/api/results/${id}`)).body.status === "active") break;
        await new Promise((res) => setTimeout(res, 20));
      }
      const d = await call(inferline.url, "DELETE", `/api/results/${id}`);
      assert.equal(d.status, 409);
      assert.equal((d.body.error as { code: string }).code, "job_not_cancelable");
      const g = await call(inferline.url, "GET", `/api/results/${id}`, undefined, { prefer: "wait=10" });
      assert.equal(g.body.status, "completed");
    } finally {
      await stop(worker);
    }
  });
});
