import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { queueName } from "../../src/queue/keys.js";
import { QueueProbe } from "../../src/supervisor/queue-probe.js";
import { WorkerRegistry } from "../../src/telemetry/workers.js";
import { call, eventually } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { cleanupPrefix, REDIS_URL, uniquePrefix } from "../support/redis.js";

const errorCode = (body: Record<string, unknown>) => (body.error as { code?: string } | undefined)?.code;

/** The value of a per-model gauge in a /metrics text. */
async function gauge(url: string, name: string, model: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(`model="${model}"`));
  return line === undefined ? undefined : Number(line.split(" ").pop());
}

/** Submits `count` echo jobs the worker rejects, one after another, each waited for: their ids. */
async function failJobs(url: string, count: number, label: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = await call(
      url,
      "POST",
      "/api/ml/echo",
      { text: `${label} ${i}`, fail: "invalid" },
      { prefer: "wait=10" },
    );
    assert.equal(r.body.status, "failed", JSON.stringify(r.body));
    ids.push(String(r.body.job_id));
  }
  return ids;
}

void describe("pausing and resuming a model's queue", () => {
  const inferline = useInferline("admin-pause", { env: { MODELS: "echo,sentiment" }, worker: true });

  void it("a paused queue accepts jobs but starts none; resumed, they complete", async () => {
    const paused = await call(inferline.url, "POST", "/api/admin/models/echo/pause");
    assert.equal(paused.status, 200, JSON.stringify(paused.body));
    assert.deepEqual(paused.body, { model: "echo", paused: true });
    // Pausing twice is harmless.
    assert.equal((await call(inferline.url, "POST", "/api/admin/models/echo/pause")).status, 200);

    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await call(inferline.url, "POST", "/api/ml/echo", { text: `paused ${i}` });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      ids.push(String(r.body.job_id));
    }
    // Another model's queue goes on.
    const other = await call(
      inferline.url,
      "POST",
      "/api/ml/sentiment",
      { text: "fine" },
      { prefer: "wait=10" },
    );
    assert.equal(other.body.status, "completed", JSON.stringify(other.body));
    await sleep(1000);
    for (const id of ids) {
      const r = await call(inferline.url, "GET", `/api/results/${id}`);
      assert.equal(r.body.status, "queued", `${id}: ${JSON.stringify(r.body)}`);
    }

    // /health is read at most once a second.
    const health = await eventually(async () => {
      const h = await call(inferline.url, "GET", "/health");
      return (h.body.models as Record<string, { paused: boolean }>).echo!.paused && h;
    });
    const echo = (health.body.models as Record<string, { paused: boolean; queue_depth: number }>).echo!;
    assert.equal(echo.paused, true);
    assert.equal(echo.queue_depth, 3);
    assert.equal(health.body.status, "degraded", JSON.stringify(health.body));
    assert.ok(
      (health.body.reasons as string[]).some((r) => /paused.*echo/.test(r)),
      JSON.stringify(health.body.reasons),
    );
    assert.equal(await gauge(inferline.url, "inferline_queue_paused", "echo"), 1);
    // The model's own description says it is not served now, and why.
    const model = await call(inferline.url, "GET", "/api/models/echo");
    const serving = model.body.serving as {
      ready: boolean;
      paused: boolean;
      workers: number;
      queue_depth: number;
    };
    assert.deepEqual(
      {
        ready: serving.ready,
        paused: serving.paused,
        workers: serving.workers,
        queue_depth: serving.queue_depth,
      },
      { ready: false, paused: true, workers: 1, queue_depth: 3 },
    );
    const list = await call(inferline.url, "GET", "/api/models");
    const sentiment = (list.body.models as { name: string; serving: { ready: boolean } }[]).find(
      (m) => m.name === "sentiment",
    );
    assert.equal(sentiment?.serving.ready, true);
    assert.equal(await gauge(inferline.url, "inferline_queue_paused", "sentiment"), 0);

    const resumed = await call(inferline.url, "POST", "/api/admin/models/echo/resume");
    assert.equal(resumed.status, 200, JSON.stringify(resumed.body));
    assert.deepEqual(resumed.body, { model: "echo", paused: false });
    for (const id of ids) {
      const r = await call(inferline.url, "GET", `/api/results/${id}`, undefined, { prefer: "wait=10" });
      assert.equal(r.body.status, "completed", `${id}: ${JSON.stringify(r.body)}`);
    }
    // A scrape reuses the queue reading of one made less than 100 ms before.
    await eventually(async () => (await gauge(inferline.url, "inferline_queue_paused", "echo")) === 0);
    // /health is read at most once a second.
    await eventually(async () => {
      const h = await call(inferline.url, "GET", "/health");
      return (h.body.models as Record<string, { paused: boolean }>).echo!.paused === false;
    });
  });

  void it("an unknown model is 404 model_not_found, and nothing is paused", async () => {
    const r = await call(inferline.url, "POST", "/api/admin/models/nope/pause");
    assert.equal(r.status, 404, JSON.stringify(r.body));
    assert.equal(errorCode(r.body), "model_not_found");
    const redis = new Redis(REDIS_URL);
    try {
      assert.equal((await redis.keys(`${inferline.prefix}:{nope}:*`)).length, 0, "no key made for it");
    } finally {
      redis.disconnect();
    }
  });
});

void describe("failed jobs, the dead letters", () => {
  const inferline = useInferline("admin-dead-letters", {
    env: {
      MODELS: "echo",
      RESULT_RETENTION_SECONDS: "1",
      FAILED_RETENTION_SECONDS: "600",
      FAILED_MAX_JOBS: "2",
    },
    worker: true,
  });

  void it("outlive the result retention, the newest FAILED_MAX_JOBS of them, for an admin to retry", async () => {
    const wait = { prefer: "wait=10" };
    const failed = await failJobs(inferline.url, 3, "dead");
    const ok = await call(inferline.url, "POST", "/api/ml/echo", { text: "done" }, wait);
    assert.equal(ok.body.status, "completed", JSON.stringify(ok.body));
    // Past the result retention, and past a sweep (every second here).
    await sleep(2500);
    assert.equal((await call(inferline.url, "GET", `/api/results/${String(ok.body.job_id)}`)).status, 404);
    // The oldest failure made room for the third; the other two are kept.
    assert.equal((await call(inferline.url, "GET", `/api/results/${failed[0]!}`)).status, 404);
    for (const id of failed.slice(1)) {
      const g = await call(inferline.url, "GET", `/api/results/${id}`);
      assert.equal(g.status, 200, JSON.stringify(g.body));
      assert.equal(g.body.status, "failed");
    }
    const list = await call(inferline.url, "GET", "/api/admin/jobs/failed?model=echo");
    assert.equal(list.status, 200, JSON.stringify(list.body));
    const listed = (list.body.jobs as { job_id: string }[]).map((j) => j.job_id).sort();
    assert.deepEqual(listed, failed.slice(1).sort());
    const retried = await call(inferline.url, "POST", `/api/admin/jobs/${failed[2]!}/retry`);
    assert.equal(retried.status, 202, JSON.stringify(retried.body));
  });
});

void describe("removing failed jobs", () => {
  const inferline = useInferline("admin-clean", { env: { MODELS: "echo,sentiment" }, worker: true });

  void it("removes the failed jobs asked for, and only those", async () => {
    const failed = await failJobs(inferline.url, 2, "bad");
    const ok = await call(inferline.url, "POST", "/api/ml/echo", { text: "good" }, { prefer: "wait=10" });
    assert.equal(ok.body.status, "completed");

    // Failed less than an hour ago: kept.
    const young = await call(inferline.url, "DELETE", "/api/admin/jobs/failed?older_than_seconds=3600");
    assert.equal(young.status, 200, JSON.stringify(young.body));
    assert.deepEqual(young.body, { removed: 0, models: { echo: 0, sentiment: 0 } });

    const removed = await call(inferline.url, "DELETE", "/api/admin/jobs/failed?model=echo");
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    assert.deepEqual(removed.body, { removed: 2, models: { echo: 2 } });
    const list = await call(inferline.url, "GET", "/api/admin/jobs/failed");
    assert.deepEqual(list.body.jobs, []);
    for (const id of failed)
      assert.equal((await call(inferline.url, "GET", `/api/results/${id}`)).status, 404);
    // The completed job is untouched.
    assert.equal((await call(inferline.url, "GET", `/api/results/${String(ok.body.job_id)}`)).status, 200);
  });

  void it("bad parameters are 400 naming the field; an unknown model is 404", async () => {
    const bad = await call(inferline.url, "DELETE", "/api/admin/jobs/failed?older_than_seconds=-1");
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    assert.match(JSON.stringify(bad.body), /older_than_seconds/);
    const extra = await call(inferline.url, "DELETE", "/api/admin/jobs/failed?state=all");
    assert.equal(extra.status, 400, JSON.stringify(extra.body));
    const unknown = await call(inferline.url, "DELETE", "/api/admin/jobs/failed?model=nope");
    assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
    assert.equal(errorCode(unknown.body), "model_not_found");
  });
});

void describe("retrying failed jobs", () => {
  const inferline = useInferline("admin-retry-all", { env: { MODELS: "echo,sentiment" }, worker: true });

  void it("puts the failed jobs asked for back in their queues, with fresh attempts", async () => {
    const ids = await failJobs(inferline.url, 3, "retry me");
    // Paused, so the retried jobs stay queued where the test can see them.
    assert.equal((await call(inferline.url, "POST", "/api/admin/models/echo/pause")).status, 200);
    const some = await call(inferline.url, "POST", "/api/admin/jobs/failed/retry?model=echo&limit=2");
    assert.equal(some.status, 200, JSON.stringify(some.body));
    assert.deepEqual(some.body, { retried: 2, models: { echo: 2 } });
    const states = async () =>
      Promise.all(
        ids.map(async (id) => (await call(inferline.url, "GET", `/api/results/${id}`)).body.status),
      );
    assert.deepEqual([...(await states())].sort(), ["failed", "queued", "queued"]);
    const listed = await call(inferline.url, "GET", "/api/admin/jobs/failed?model=echo");
    assert.equal((listed.body.jobs as unknown[]).length, 1, JSON.stringify(listed.body));
    assert.deepEqual(
      (await call(inferline.url, "GET", "/api/admin/jobs/failed?model=sentiment")).body.jobs,
      [],
    );
    const rest = await call(inferline.url, "POST", "/api/admin/jobs/failed/retry");
    assert.deepEqual(rest.body, { retried: 1, models: { echo: 1, sentiment: 0 } });
    assert.deepEqual(await states(), ["queued", "queued", "queued"]);
    assert.deepEqual((await call(inferline.url, "GET", "/api/admin/jobs/failed")).body.jobs, []);
    // Resumed, each runs again (and fails again: its input is still refused).
    assert.equal((await call(inferline.url, "POST", "/api/admin/models/echo/resume")).status, 200);
    for (const id of ids) {
      const r = await call(inferline.url, "GET", `/api/results/${id}`, undefined, { prefer: "wait=10" });
      assert.equal(r.body.status, "failed", JSON.stringify(r.body));
    }
    const nothing = await call(inferline.url, "POST", "/api/admin/jobs/failed/retry?model=sentiment");
    assert.deepEqual(nothing.body, { retried: 0, models: { sentiment: 0 } });
  });

  void it("bad parameters are 400 naming the field; an unknown model is 404", async () => {
    const bad = await call(inferline.url, "POST", "/api/admin/jobs/failed/retry?limit=0");
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    assert.match(JSON.stringify(bad.body), /limit/);
    const unknown = await call(inferline.url, "POST", "/api/admin/jobs/failed/retry?model=nope");
    assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
    assert.equal(errorCode(unknown.body), "model_not_found");
    const listing = await call(inferline.url, "GET", "/api/admin/jobs/failed?model=nope");
    assert.equal(errorCode(listing.body), "model_not_found");
  });
});

void describe("the autoscaler's queue probe", () => {
  const prefix = uniquePrefix("probe-paused");
  let redis: Redis;
  let queue: Queue;
  let probe: QueueProbe;

  before(async () => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    queue = new Queue(queueName("echo"), { connection: redis, prefix });
    probe = new QueueProbe(redis, prefix, ["echo"], new WorkerRegistry(redis, prefix, 3000));
    for (let i = 0; i < 4; i++) await queue.add("job", { i }, { priority: 2 });
  });
  after(async () => {
    await probe?.close();
    await queue?.close();
    redis?.disconnect();
    await cleanupPrefix(prefix);
  });

  void it("leaves out a paused queue: more workers would not start its jobs", async () => {
    assert.equal((await probe.sample()).depth, 4);
    await queue.pause();
    assert.equal((await probe.sample()).depth, 0);
    await queue.resume();
    await eventually(async () => (await probe.sample()).depth === 4);
  });
});
