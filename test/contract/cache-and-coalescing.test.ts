import assert from "node:assert/strict";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { call, eventually, sendRaw } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { makeRepository } from "./fixtures.js";

describe("result cache, coalescing and idempotency", () => {
  const repo = makeRepository({ cached: { cache: { ttlSeconds: 600 } }, rolled: {} });
  const overrides = { MODEL_REPOSITORY: repo.dir, AUTH_DISABLED: "true" };
  const inferline = useInferline("cache", { env: overrides, worker: true });
  after(() => repo.remove());
  const startedJobs = (ids: string[]) =>
    inferline.worker.lines.filter((l) => l.event === "job_started" && ids.includes(l.job_id as string))
      .length;
  /** Sends `body` to `path` with Idempotency-Key `key`, waiting up to 10 s for the answer. */
  const sendWithKey = (path: string, body: unknown, key: string) =>
    call(inferline.url, "POST", path, body, { "idempotency-key": key, prefer: "wait=10" });

  it("answers a repeated input from the cache without running the model", async () => {
    const first = await call(
      inferline.url,
      "POST",
      "/api/ml/sentiment",
      { text: "cache me, I am lovely" },
      { prefer: "wait=10" },
    );
    assert.equal(first.status, 200);
    assert.equal(first.body.cached, false);
    // Same input, keys in another order would not matter; here the same text.
    const second = await call(inferline.url, "POST", "/api/ml/sentiment", { text: "cache me, I am lovely" });
    assert.equal(second.status, 200);
    assert.equal(second.body.cached, true);
    assert.deepEqual(second.body.result, first.body.result);
    assert.equal(second.body.job_id, first.body.job_id);
    assert.equal(startedJobs([first.body.job_id as string]), 1);
  });

  it("a cached answer says when its result was computed, as the job's own view does", async () => {
    const body = { text: "when was I computed?" };
    const first = await call(inferline.url, "POST", "/api/ml/cached", body, { prefer: "wait=10" });
    assert.equal(first.body.status, "completed");
    const finished = first.body.finished_at as string;
    await eventually(async () => Date.now() > Date.parse(finished) + 5, 1000, 5);
    const hit = await call(inferline.url, "POST", "/api/ml/cached", body);
    assert.equal(hit.body.cached, true);
    assert.equal(hit.body.finished_at, finished);
    const own = await call(inferline.url, "GET", `/api/results/${first.body.job_id as string}`);
    assert.equal(own.body.finished_at, finished);
  });

  it("a cached answer describes the job that computed it, whatever priority the hit asked for", async () => {
    const body = { text: "who computed me?" };
    const first = await call(inferline.url, "POST", "/api/ml/cached?priority=low", body, {
      prefer: "wait=10",
    });
    assert.equal(first.body.status, "completed");
    const hit = await call(inferline.url, "POST", "/api/ml/cached?priority=high", body);
    assert.equal(hit.body.cached, true);
    const own = await call(inferline.url, "GET", `/api/results/${first.body.job_id as string}`);
    for (const field of ["job_id", "priority", "attempts", "max_attempts", "created_at", "finished_at"])
      assert.deepEqual(hit.body[field], own.body[field], field);
    assert.equal(hit.body.priority, "low");
    assert.equal(hit.body.attempts, 1);
  });

  it("canonical input: key order and number spelling do not matter", async () => {
    const a = await call(
      inferline.url,
      "POST",
      "/api/ml/cached",
      { text: "k", value: { b: 1, a: [1.0, -0] } },
      { prefer: "wait=10" },
    );
    const b = await call(
      inferline.url,
      "POST",
      "/api/ml/cached",
      '{"value":{"a":[1,0],"b":1.00},"text":"k"}',
    );
    assert.equal(a.body.cached, false);
    assert.equal(b.status, 200);
    assert.equal(b.body.cached, true);
  });

  it("invalidating the model (or one input) makes the next request a miss", async () => {
    const body = { text: "invalidate me please" };
    await call(inferline.url, "POST", "/api/ml/sentiment", body, { prefer: "wait=10" });
    assert.equal((await call(inferline.url, "POST", "/api/ml/sentiment", body)).body.cached, true);
    const inv = await call(inferline.url, "POST", "/api/admin/cache/invalidate", { model: "sentiment" });
    assert.equal(inv.status, 200);
    const miss = await call(inferline.url, "POST", "/api/ml/sentiment", body, { prefer: "wait=10" });
    assert.equal(miss.body.cached, false);
    assert.equal((await call(inferline.url, "POST", "/api/ml/sentiment", body)).body.cached, true);
    await call(inferline.url, "POST", "/api/admin/cache/invalidate", { model: "sentiment", input: body });
    assert.equal(
      (await call(inferline.url, "POST", "/api/ml/sentiment", body, { prefer: "wait=10" })).body.cached,
      false,
    );
    await call(inferline.url, "POST", "/api/admin/cache/invalidate", {});
    assert.equal(
      (await call(inferline.url, "POST", "/api/ml/sentiment", body, { prefer: "wait=10" })).body.cached,
      false,
    );
  });

  /** Queues `body` on the cached model and returns its job id once a worker is running it. */
  const running = async (body: unknown) => {
    const queued = await call(inferline.url, "POST", "/api/ml/cached", body);
    assert.equal(queued.status, 202);
    const id = queued.body.job_id as string;
    await eventually(async () => startedJobs([id]) === 1);
    return id;
  };
  const invalidateInput = async (input: unknown) =>
    assert.equal(
      (await call(inferline.url, "POST", "/api/admin/cache/invalidate", { model: "cached", input })).status,
      200,
    );

  it("a job running when its input is invalidated does not put its result back in the cache", async () => {
    const body = { text: "computed before the invalidation", sleep_ms: 1500 };
    const id = await running(body);
    await invalidateInput(body);
    const done = await call(inferline.url, "GET", `/api/results/${id}`, undefined, { prefer: "wait=10" });
    assert.equal(done.body.status, "completed");
    const next = await call(inferline.url, "POST", "/api/ml/cached", body, { prefer: "wait=10" });
    assert.equal(next.body.cached, false, "the result stored after the invalidation is not served");
    assert.notEqual(next.body.job_id, id);
    // The result of a job admitted after the invalidation is cached as usual.
    const again = await call(inferline.url, "POST", "/api/ml/cached", body);
    assert.equal(again.body.cached, true);
    assert.equal(again.body.job_id, next.body.job_id);
  });

  it("a request after an input's invalidation does not join the job computing it from before", async () => {
    const body = { text: "joined across the invalidation?", sleep_ms: 1500 };
    const id = await running(body);
    await invalidateInput(body);
    const next = await call(inferline.url, "POST", "/api/ml/cached", body, { prefer: "wait=10" });
    assert.equal(next.body.status, "completed");
    assert.notEqual(next.body.job_id, id);
  });

  it("never caches a failure", async () => {
    const body = { text: "doomed", fail: "error" };
    const a = await call(inferline.url, "POST", "/api/ml/cached", body, { prefer: "wait=20" });
    assert.equal(a.body.status, "failed");
    const b = await call(inferline.url, "POST", "/api/ml/cached", body, { prefer: "wait=20" });
    assert.equal(b.body.cached, false);
    assert.notEqual(b.body.job_id, a.body.job_id);
    assert.equal(b.body.status, "failed");
  });

  it("100 identical concurrent requests run one inference and all get the result", async () => {
    const body = { text: "stampede", sleep_ms: 300 };
    const replies = await Promise.all(
      Array.from({ length: 100 }, () =>
        call(inferline.url, "POST", "/api/ml/cached", body, { prefer: "wait=20" }),
      ),
    );
    assert.ok(replies.every((r) => r.status === 200 && r.body.status === "completed"));
    assert.ok(replies.every((r) => (r.body.result as { echo: string }).echo === "stampede"));
    const ids = new Set(replies.map((r) => r.body.job_id as string));
    assert.equal(ids.size, 1, "one job for all");
    assert.equal(startedJobs([...ids]), 1, "one inference");
  });

  it("Idempotency-Key: same key and body → same job; different body → 422", async () => {
    const key = `idem-${Date.now()}`;
    const a = await call(
      inferline.url,
      "POST",
      "/api/ml/sentiment",
      { text: "pay once" },
      { "idempotency-key": key },
    );
    const b = await call(
      inferline.url,
      "POST",
      "/api/ml/sentiment",
      { text: "pay once" },
      { "idempotency-key": key, prefer: "wait=10" },
    );
    assert.equal(a.body.job_id, b.body.job_id);
    assert.equal(b.body.status, "completed");
    const c = await call(
      inferline.url,
      "POST",
      "/api/ml/sentiment",
      { text: "pay twice" },
      { "idempotency-key": key },
    );
    assert.equal(c.status, 422);
    assert.equal((c.body.error as { code: string }).code, "idempotency_key_reused");
    // The same body at another priority is another request too, and the answer says what counts.
    const d = await call(
      inferline.url,
      "POST",
      "/api/ml/sentiment?priority=high",
      { text: "pay once" },
      { "idempotency-key": key },
    );
    assert.equal(d.status, 422);
    const error = d.body.error as { code: string; message: string; details: { job_id: string } };
    assert.equal(error.code, "idempotency_key_reused");
    assert.equal(error.details.job_id, a.body.job_id);
    assert.doesNotMatch(error.message, /different request body/);
    assert.match(error.message, /priority/);
  });

  it("Idempotency-Key sent twice is refused, not read as one key joined from both", async () => {
    const port = Number(new URL(inferline.url).port);
    const body = JSON.stringify({ text: "two keys" });
    for (const path of ["/api/ml/sentiment", "/api/ml/sentiment/batch"]) {
      const payload = path.endsWith("batch") ? JSON.stringify({ inputs: [{ text: "two keys" }] }) : body;
      const r = await sendRaw(
        port,
        `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n` +
          `Idempotency-Key: k1\r\nidempotency-key: k2\r\nContent-Length: ${payload.length}\r\n` +
          `Connection: close\r\n\r\n${payload}`,
      );
      assert.equal(r.status, 400, path);
      const error = (JSON.parse(r.body) as { error: { code: string; message: string } }).error;
      assert.equal(error.code, "invalid_parameter");
      assert.match(error.message, /^headers\.idempotency-key must be sent once/);
    }
  });

  it("Idempotency-Key on a batch: a retry gets the same jobs, each run once; another body → 422", async () => {
    const key = `idem-batch-${Date.now()}`;
    const inputs = [{ text: "batch one, kept" }, { text: "batch two, kept" }, { text: "batch one, kept" }];
    const send = (body: unknown, wait = false) =>
      call(inferline.url, "POST", "/api/ml/sentiment/batch", body, {
        "idempotency-key": key,
        ...(wait ? { prefer: "wait=10" } : {}),
      });
    const first = await send({ inputs });
    assert.ok(first.status === 202 || first.status === 200, JSON.stringify(first.body));
    const ids = (first.body.jobs as { job_id: string }[]).map((j) => j.job_id);
    // The third input joined the first's job.
    assert.equal(ids[2], ids[0]);
    const again = await send({ inputs }, true);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.deepEqual(
      (again.body.jobs as { job_id: string }[]).map((j) => j.job_id),
      ids,
    );
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(startedJobs(ids), 2, "two inferences for two distinct inputs, however often sent");
    const other = await send({ inputs: [{ text: "something else" }] });
    assert.equal(other.status, 422);
    assert.equal((other.body.error as { code: string }).code, "idempotency_key_reused");
  });

  it("Idempotency-Key whose first answer came from the cache: a retry is answered, not 404", async () => {
    const body = { text: "already known, lovely" };
    await call(inferline.url, "POST", "/api/ml/sentiment", body, { prefer: "wait=10" });
    const key = `idem-hit-${Date.now()}`;
    const first = await call(inferline.url, "POST", "/api/ml/sentiment", body, { "idempotency-key": key });
    assert.equal(first.body.cached, true);
    const retry = await sendWithKey("/api/ml/sentiment", body, key);
    assert.equal(retry.status, 200);
    assert.equal(retry.body.status, "completed");
    assert.deepEqual(retry.body.result, first.body.result);
    // With the cache entry gone, a retry still gets the job the first answer named, not a new one.
    await call(inferline.url, "POST", "/api/admin/cache/invalidate", { model: "sentiment" });
    const later = await sendWithKey("/api/ml/sentiment", body, key);
    assert.equal(later.status, 200);
    assert.equal(later.body.job_id, first.body.job_id);
    assert.equal(startedJobs([first.body.job_id as string]), 1, "no second inference");
  });

  it("Idempotency-Key: a retry after a new version became the latest gets the first job, not 422", async () => {
    const single = `idem-rollout-${Date.now()}`;
    const batch = `idem-rollout-batch-${Date.now()}`;
    // The two requests, sent before version 2 exists and again, as they were, after.
    const sendSingle = () => sendWithKey("/api/ml/rolled", { text: "rolled once" }, single);
    const inputs = [{ text: "rolled one" }, { text: "rolled two" }];
    const sendBatch = () => sendWithKey("/api/ml/rolled/batch", { inputs }, batch);
    const first = await sendSingle();
    assert.equal(first.body.version, "1");
    const firstBatch = await sendBatch();
    assert.equal(firstBatch.status, 200, JSON.stringify(firstBatch.body));
    // Version 2 is deployed and becomes the latest.
    const v2 = path.join(repo.dir, "rolled", "2");
    cpSync(path.join(repo.dir, "rolled", "1"), v2, { recursive: true });
    const manifest = JSON.parse(readFileSync(path.join(v2, "manifest.json"), "utf8")) as object;
    writeFileSync(path.join(v2, "manifest.json"), JSON.stringify({ ...manifest, version: "2" }));
    const reload = await call(inferline.url, "POST", "/api/admin/models/reload");
    assert.equal(reload.status, 200, JSON.stringify(reload.body));
    const retry = await sendSingle();
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal(retry.body.job_id, first.body.job_id);
    assert.equal(retry.body.version, "1");
    const retryBatch = await sendBatch();
    assert.equal(retryBatch.status, 200, JSON.stringify(retryBatch.body));
    const ids = (r: typeof firstBatch) => (r.body.jobs as { job_id: string }[]).map((j) => j.job_id);
    assert.deepEqual(ids(retryBatch), ids(firstBatch));
    // Naming another version is another request.
    const other = await sendWithKey("/api/ml/rolled?version=2", { text: "rolled once" }, single);
    assert.equal(other.status, 422);
    assert.equal((other.body.error as { code: string }).code, "idempotency_key_reused");
  });
});

describe("cached answers that outlive the job that computed them", () => {
  // The cache keeps an answer for its TTL (600 s); the job that computed it is kept 3 s.
  const repo = makeRepository({ cached: { cache: { ttlSeconds: 600 } } });
  const inferline = useInferline("cache-retention", {
    env: { MODEL_REPOSITORY: repo.dir, RESULT_RETENTION_SECONDS: "3" },
    worker: true,
  });
  after(() => repo.remove());
  const links = (id: string) => ({ self: `/api/results/${id}`, events: `/api/results/${id}/events` });

  it("link to that job only while it is retained, never to a removed one", async () => {
    const body = { text: "outlives its job" };
    const first = await call(inferline.url, "POST", "/api/ml/cached", body, { prefer: "wait=10" });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.cached, false);
    const id = first.body.job_id as string;
    const hit = await call(inferline.url, "POST", "/api/ml/cached", body);
    assert.equal(hit.body.cached, true);
    assert.deepEqual(hit.body.links, links(id));
    const self = await call(inferline.url, "GET", (hit.body.links as { self: string }).self);
    assert.equal(self.status, 200, JSON.stringify(self.body));
    assert.equal(self.body.job_id, id);

    // Past the job's retention, counted from when it finished. BullMQ removes finished jobs
    // past their age as later jobs finish: one does.
    await sleep(3200);
    const later = await call(
      inferline.url,
      "POST",
      "/api/ml/cached",
      { text: "finishes later" },
      {
        prefer: "wait=10",
      },
    );
    assert.equal(later.status, 200, JSON.stringify(later.body));
    const gone = await call(inferline.url, "GET", `/api/results/${id}`);
    assert.equal(gone.status, 404, "the job that computed the answer is removed");

    const late = await call(inferline.url, "POST", "/api/ml/cached", body);
    assert.equal(late.status, 200, JSON.stringify(late.body));
    assert.equal(late.body.cached, true);
    assert.equal(late.body.job_id, id, "the answer still names the job that computed it");
    assert.deepEqual(late.body.result, first.body.result);
    assert.deepEqual(late.body.links, {}, "no link to a removed job");
    assert.equal("jobReadable" in late.body, false, "the internal flag is not sent");
    const batch = await call(inferline.url, "POST", "/api/ml/cached/batch", { inputs: [body] });
    assert.equal(batch.status, 200, JSON.stringify(batch.body));
    const [job] = batch.body.jobs as { cached: boolean; links: unknown }[];
    assert.equal(job?.cached, true);
    assert.deepEqual(job?.links, {});
  });
});
