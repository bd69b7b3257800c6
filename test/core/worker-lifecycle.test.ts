import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { startApi } from "../../src/api/main.js";
import { testConfig, testEnv } from "../support/config.js";
import { call } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { ROOT, spawnCli, spawnWorker, stop } from "../support/processes.js";
import { delayingProxy } from "../support/redis-proxy.js";
import { cleanupPrefix, ownRedis, REDIS_URL, uniquePrefix } from "../support/redis.js";

describe("worker processes", () => {
  const inferline = useInferline("lifecycle");
  // Short leases so a killed worker's job is redelivered within a couple of seconds.
  const env = testEnv(inferline.prefix, {
    WORKER_LOCK_DURATION_MS: "1000",
    WORKER_STALLED_INTERVAL_MS: "500",
  });

  it("kill -9 mid-job: the job completes on another worker", async () => {
    const a = await spawnWorker(env, ["--models", "echo"]);
    const b = await spawnWorker(env, ["--models", "echo"]);
    try {
      const r = await call(inferline.url, "POST", "/api/ml/echo", { text: "survive", sleep_ms: 2000 });
      const id = r.body.job_id as string;
      const started = await Promise.race(
        [a, b].map((w) => w.waitForLine((l) => l.event === "job_started" && l.job_id === id).then(() => w)),
      );
      const survivor = started === a ? b : a;
      started.kill("SIGKILL");
      await started.exited;
      const g = await call(inferline.url, "GET", `/api/results/${id}`, undefined, { prefer: "wait=20" });
      assert.equal(g.body.status, "completed");
      assert.deepEqual(g.body.result, { echo: "survive", attempt: 1 });
      const done = await survivor.waitForLine((l) => l.event === "job_completed" && l.job_id === id);
      // Its second start: no attempt failed, so still attempt 1, and the line says why it ran again.
      assert.equal(done.attempt, 1);
      assert.equal(done.redelivered, true);
    } finally {
      await Promise.all([stop(a), stop(b)]);
    }
  });

  it("SIGTERM while jobs run: in-flight jobs complete, nothing is lost, exit code 0", async () => {
    const w = await spawnWorker(env, ["--models", "echo", "--concurrency", "8"]);
    const replies = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        call(inferline.url, "POST", "/api/ml/echo", { value: i, sleep_ms: 1200 }),
      ),
    );
    await w.waitForLine((l) => l.event === "job_started");
    w.kill("SIGTERM");
    const exit = await w.exited;
    assert.equal(exit.code, 0);
    const completedInWorker = w.lines.filter((l) => l.event === "job_completed").length;
    assert.ok(completedInWorker >= 1, "jobs in hand finished before exit");
    // Whatever it had not started stays queued for the next worker: nothing is lost.
    const next = await spawnWorker(env, ["--models", "echo"]);
    try {
      for (const r of replies) {
        const g = await call(inferline.url, "GET", `/api/results/${String(r.body.job_id)}`, undefined, {
          prefer: "wait=20",
        });
        assert.equal(g.body.status, "completed");
        assert.equal(g.body.attempts, 1, "no job ran twice");
      }
    } finally {
      await stop(next);
    }
  });

  it("SIGTERM with a job outlasting WORKER_SHUTDOWN_TIMEOUT_MS: abandoned to redelivery, not lost", async () => {
    const w = await spawnWorker({ ...env, WORKER_SHUTDOWN_TIMEOUT_MS: "300" }, ["--models", "echo"]);
    const r = await call(inferline.url, "POST", "/api/ml/echo", {
      text: "outlasts the drain",
      sleep_ms: 3000,
    });
    const id = r.body.job_id as string;
    await w.waitForLine((l) => l.event === "job_started" && l.job_id === id);
    w.kill("SIGTERM");
    const exit = await w.exited;
    assert.equal(exit.code, 0);
    const stopped = w.lines.find((l) => l.event === "worker_stopped");
    assert.equal(stopped?.drained, false, JSON.stringify(stopped));
    assert.ok(!w.lines.some((l) => l.event === "job_completed"), "it did not wait for the job");
    // Its lease runs out; the next worker takes the job up and completes it.
    const next = await spawnWorker(env, ["--models", "echo"]);
    try {
      const g = await call(inferline.url, "GET", `/api/results/${id}`, undefined, { prefer: "wait=20" });
      assert.equal(g.body.status, "completed", JSON.stringify(g.body));
      await next.waitForLine((l) => l.event === "job_completed" && l.job_id === id);
    } finally {
      await stop(next);
    }
  });

  it("recycles itself after WORKER_MAX_JOBS jobs and exits 0", async () => {
    const w = await spawnWorker({ ...env, WORKER_MAX_JOBS: "3" }, ["--models", "echo", "--concurrency", "1"]);
    const replies = await Promise.all(
      Array.from({ length: 3 }, (_, i) =>
        call(inferline.url, "POST", "/api/ml/echo", { value: i }, { prefer: "wait=10" }),
      ),
    );
    assert.ok(replies.every((r) => r.body.status === "completed"));
    const exit = await w.exited;
    assert.equal(exit.code, 0);
    assert.ok(w.lines.some((l) => l.event === "worker_recycling"));
  });

  it("recycles itself once its RSS, read at each heartbeat, passes WORKER_MAX_RSS_BYTES after a job", async () => {
    const w = await spawnWorker(
      { ...env, WORKER_MAX_RSS_BYTES: String(1024 * 1024), WORKER_HEARTBEAT_INTERVAL_MS: "200" },
      ["--models", "echo", "--concurrency", "1"],
    );
    // Over the limit from the start, but no job yet: a replacement would be just as big, so it
    // stays (several heartbeats pass meanwhile).
    await sleep(1500);
    assert.ok(!w.lines.some((l) => l.event === "worker_recycling"), "no recycling before any job");
    assert.equal(w.proc.exitCode, null);
    const r = await call(inferline.url, "POST", "/api/ml/echo", { text: "one" }, { prefer: "wait=10" });
    assert.equal(r.body.status, "completed");
    const line = await w.waitForLine((l) => l.event === "worker_recycling", 15_000);
    assert.match(String(line.reason ?? line.msg), /RSS/);
    assert.equal((await w.exited).code, 0);
  });
});

describe("a worker with one model that cannot load", () => {
  // echo, plus penguins whose model.onnx is not an ONNX model.
  const repo = mkdtempSync(path.join(tmpdir(), "inferline-broken-"));
  cpSync(path.join(ROOT, "models", "echo"), path.join(repo, "echo"), { recursive: true });
  mkdirSync(path.join(repo, "penguins", "1"), { recursive: true });
  cpSync(
    path.join(ROOT, "models", "penguins", "1", "manifest.json"),
    path.join(repo, "penguins", "1", "manifest.json"),
  );
  writeFileSync(path.join(repo, "penguins", "1", "model.onnx"), "this is not an ONNX model");
  const inferline = useInferline("broken-model", { env: { MODEL_REPOSITORY: repo } });
  after(() => rmSync(repo, { recursive: true, force: true }));

  it("starts, serves the models that load and says which it skipped", async () => {
    const w = await spawnWorker(testEnv(inferline.prefix, { MODEL_REPOSITORY: repo }));
    try {
      const started = await w.waitForLine((l) => l.event === "worker_started");
      assert.deepEqual(started.models, ["echo"]);
      const skipped = await w.waitForLine((l) => l.event === "models_not_served");
      assert.deepEqual(skipped.models, ["penguins"]);
      const r = await call(
        inferline.url,
        "POST",
        "/api/ml/echo",
        { text: "still here" },
        { prefer: "wait=10" },
      );
      assert.equal(r.body.status, "completed", JSON.stringify(r.body));
      assert.deepEqual(r.body.result, { echo: "still here", attempt: 1 });
    } finally {
      await stop(w);
    }
    assert.equal((await w.exited).code, 0);
  });
});

describe("a worker stopped while it starts", () => {
  it("SIGTERM before it took jobs: it finishes starting, stops cleanly and exits 0", async () => {
    // A Redis that is not there yet keeps the worker in its start-up until the test starts it.
    const redis = await ownRedis({ aof: false });
    await redis.stop();
    const w = spawnCli(
      ["worker", "--models", "echo"],
      testEnv("worker-early", { REDIS_URL: redis.url, LOG_LEVEL: "debug" }),
    );
    try {
      await w.waitForLine((l) => l.event === "redis_error", 30_000);
      w.kill("SIGTERM");
      await redis.start();
      const exit = await w.exited;
      assert.equal(exit.code, 0, w.stderr().slice(-2000));
      assert.ok(w.lines.some((l) => l.event === "worker_stopped"));
    } finally {
      await stop(w);
      await redis.destroy();
    }
  });
});

describe("a job whose completion reaches Redis late", () => {
  it("is logged job_completed only once Redis holds it completed", async () => {
    const prefix = uniquePrefix("completion-late");
    let holdMs = 0;
    const proxy = await delayingProxy(new URL(REDIS_URL), { holdRequest: () => holdMs });
    const api = await startApi(testConfig(prefix, { MODELS: "echo" }));
    let w;
    try {
      w = await spawnWorker(testEnv(prefix, { REDIS_URL: proxy.url, MODELS: "echo" }), ["--models", "echo"]);
      const r = await call(api.url, "POST", "/api/ml/echo", { text: "late", sleep_ms: 500 });
      const id = r.body.job_id as string;
      await w.waitForLine((l) => l.event === "job_started" && l.job_id === id);
      // From now on, what the worker sends (the completion too) reaches Redis 3 s late.
      holdMs = 3000;
      const done = await w.waitForLine((l) => l.event === "job_completed" && l.job_id === id, 20_000);
      holdMs = 0;
      const g = await call(api.url, "GET", `/api/results/${id}`);
      assert.equal(g.body.status, "completed", JSON.stringify(g.body));
      assert.equal(done.attempt, 1);
      assert.equal(done.redelivered, undefined);
    } finally {
      if (w) await stop(w);
      await api.close();
      proxy.server.close();
      await cleanupPrefix(prefix);
    }
  });
});
