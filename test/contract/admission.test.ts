import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { pino } from "pino";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { testConfig, testEnv } from "../support/config.js";
import { call, eventually, freePort } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { spawnWorker, stop } from "../support/processes.js";
import { cleanupPrefix, monitorCommands, ownRedis, REDIS_URL, uniquePrefix } from "../support/redis.js";
import { delayingProxy, type DelayingProxy } from "../support/redis-proxy.js";
import { makeRepository } from "./fixtures.js";

describe("backpressure, deadlines and batches", () => {
  const repo = makeRepository({
    capped: { limits: { maxQueueDepth: 5 } },
    crowded: { limits: { maxQueueDepth: 5 } },
    slow: {},
    shared: { limits: { maxQueueDepth: 3 } },
  });
  const overrides = { MODEL_REPOSITORY: repo.dir, AUTH_DISABLED: "true", BATCH_MAX_ITEMS: "20" };
  const inferline = useInferline("admission", { env: overrides });
  after(() => repo.remove());

  it("a queue past its cap answers 429 with a Retry-After that grows with depth", async () => {
    for (let i = 0; i < 5; i++)
      assert.equal((await call(inferline.url, "POST", "/api/ml/capped", { value: i })).status, 202);
    const full = await call(inferline.url, "POST", "/api/ml/capped", { value: "one too many" });
    assert.equal(full.status, 429);
    assert.equal((full.body.error as { code: string }).code, "queue_full");
    const first = Number(full.headers.get("retry-after"));
    assert.ok(
      Number.isInteger(first) && first >= 1,
      `numeric Retry-After: ${full.headers.get("retry-after")}`,
    );
    // Deeper queue (jobs added behind the API's back) → a longer wait.
    const conn = new Redis(REDIS_URL);
    const q = new Queue("{capped}", { connection: conn, prefix: inferline.prefix });
    await q.addBulk(
      Array.from({ length: 20 }, (_, i) => ({ name: "predict", data: { value: i }, opts: { priority: 2 } })),
    );
    const deeper = await call(inferline.url, "POST", "/api/ml/capped", { value: "still too many" });
    await q.close();
    conn.disconnect();
    assert.equal(deeper.status, 429);
    assert.ok(Number(deeper.headers.get("retry-after")) > first, "grows with depth");
  });

  it("requests arriving together, or one batch's inputs, never pass the cap between them", async () => {
    // More new inputs than the cap holds: no wait would ever admit the batch, so not a 429.
    const huge = await call(inferline.url, "POST", "/api/ml/crowded/batch", {
      inputs: Array.from({ length: 8 }, (_, i) => ({ value: `batch ${i}` })),
    });
    assert.equal(huge.status, 413, JSON.stringify(huge.body));
    assert.equal((huge.body.error as { code: string }).code, "batch_too_large");
    assert.equal(huge.headers.get("retry-after"), null);
    for (let i = 0; i < 3; i++)
      assert.equal(
        (await call(inferline.url, "POST", "/api/ml/crowded", { value: `before ${i}` })).status,
        202,
      );
    // Four inputs fit the cap of five, but not behind the three queued: the batch is turned away whole.
    const batch = await call(inferline.url, "POST", "/api/ml/crowded/batch", {
      inputs: Array.from({ length: 4 }, (_, i) => ({ value: `batch ${i}` })),
    });
    assert.equal(batch.status, 429, JSON.stringify(batch.body));
    assert.equal((batch.body.error as { code: string }).code, "queue_full");
    const together = await Promise.all(
      Array.from({ length: 20 }, (_, i) => call(inferline.url, "POST", "/api/ml/crowded", { value: i })),
    );
    const statuses = together.map((r) => r.status).sort();
    assert.deepEqual(statuses, [...Array<number>(2).fill(202), ...Array<number>(18).fill(429)]);
    const conn = new Redis(REDIS_URL);
    const q = new Queue("{crowded}", { connection: conn, prefix: inferline.prefix });
    const counts = await q.getJobCounts("prioritized", "wait");
    await q.close();
    conn.disconnect();
    assert.equal((counts.prioritized ?? 0) + (counts.wait ?? 0), 5, "the batch queued nothing");
  });

  it("a batch turned away leaves the job one of its inputs joined to its own request", async () => {
    const mine = await call(inferline.url, "POST", "/api/ml/shared", { value: "mine" });
    assert.equal(mine.status, 202);
    // The first input joins that job; the others fill the queue past its cap.
    const batch = await call(inferline.url, "POST", "/api/ml/shared/batch", {
      inputs: [{ value: "mine" }, { value: "other 1" }, { value: "other 2" }, { value: "other 3" }],
    });
    assert.equal(batch.status, 429, JSON.stringify(batch.body));
    const cancel = await call(inferline.url, "DELETE", `/api/results/${String(mine.body.job_id)}`);
    assert.equal(cancel.status, 200, JSON.stringify(cancel.body));
    assert.equal(cancel.body.status, "canceled");
    // A join that stands still protects the job.
    const again = await call(inferline.url, "POST", "/api/ml/shared", { value: "mine again" });
    const joined = await call(inferline.url, "POST", "/api/ml/shared", { value: "mine again" });
    assert.equal(joined.body.job_id, again.body.job_id);
    const refused = await call(inferline.url, "DELETE", `/api/results/${String(again.body.job_id)}`);
    assert.equal(refused.status, 409);
  });

  it("a job whose deadline passes before a worker is free ends expired, never run", async () => {
    const waited = await call(
      inferline.url,
      "POST",
      "/api/ml/slow?timeout_ms=300",
      { text: "late" },
      { prefer: "wait=5" },
    );
    assert.equal(waited.status, 200);
    assert.equal(waited.body.status, "expired");
    assert.equal((waited.body.error as { code: string }).code, "expired");
    const later = await call(inferline.url, "POST", "/api/ml/slow?timeout_ms=200", { text: "later" });
    await sleep(400);
    const worker = await spawnWorker(testEnv(inferline.prefix, overrides), ["--models", "slow"]);
    try {
      const g = await call(inferline.url, "GET", `/api/results/${String(later.body.job_id)}`, undefined, {
        prefer: "wait=5",
      });
      assert.equal(g.body.status, "expired");
      // Ended unrun, by the API or by the worker: no attempt was made.
      assert.equal(waited.body.attempts, 0);
      assert.equal(g.body.attempts, 0);
      const ok = await call(
        inferline.url,
        "POST",
        "/api/ml/slow?timeout_ms=5000",
        { text: "in time" },
        { prefer: "wait=10" },
      );
      assert.equal(ok.body.status, "completed");
      const ran = worker.lines.filter((l) => l.event === "job_started").map((l) => l.job_id);
      assert.ok(
        !ran.includes(waited.body.job_id) && !ran.includes(later.body.job_id),
        "expired jobs never ran",
      );
    } finally {
      await stop(worker);
    }
  });

  it("a client waiting on a job is told it expired once its deadline passes", async () => {
    // No worker serves `slow` here. The waits re-read a job every 2 s without news of it: the
    // deadline, 300 ms away, must end them well before that.
    let t0 = performance.now();
    const submitted = await call(
      inferline.url,
      "POST",
      "/api/ml/slow?timeout_ms=300",
      { text: "told in time" },
      { prefer: "wait=10" },
    );
    const submitWait = performance.now() - t0;
    assert.equal(submitted.body.status, "expired");
    const queued = await call(inferline.url, "POST", "/api/ml/slow?timeout_ms=300", { text: "read" });
    t0 = performance.now();
    const read = await call(inferline.url, "GET", `/api/results/${String(queued.body.job_id)}`, undefined, {
      prefer: "wait=10",
    });
    const readWait = performance.now() - t0;
    assert.equal(read.body.status, "expired");
    assert.ok(submitWait < 1500, `POST with Prefer: wait answered after ${Math.round(submitWait)} ms`);
    assert.ok(readWait < 1500, `GET with Prefer: wait answered after ${Math.round(readWait)} ms`);
  });

  it("the batch endpoint queues many inputs at once and can wait for all", async () => {
    const worker = await spawnWorker(testEnv(inferline.prefix, overrides), ["--models", "sentiment"]);
    try {
      const texts = Array.from({ length: 10 }, (_, i) => ({ text: `batch item ${i} is great` }));
      const queued = await call(inferline.url, "POST", "/api/ml/sentiment/batch", { inputs: texts });
      assert.ok([200, 202].includes(queued.status));
      const jobs = queued.body.jobs as { job_id: string }[];
      assert.equal(jobs.length, 10);
      assert.equal(new Set(jobs.map((j) => j.job_id)).size, 10);
      const fresh = Array.from({ length: 10 }, (_, i) => ({ text: `another batch item ${i}, awful` }));
      const done = await call(
        inferline.url,
        "POST",
        "/api/ml/sentiment/batch",
        { inputs: fresh },
        { prefer: "wait=10" },
      );
      assert.equal(done.status, 200);
      assert.equal(done.body.status, "completed");
      for (const j of done.body.jobs as { status: string; result: { label: string } }[]) {
        assert.equal(j.status, "completed");
        assert.equal(j.result.label, "negative");
      }
    } finally {
      await stop(worker);
    }
  });

  it("a batch waits on more than ten jobs at once without a listener warning", async () => {
    // No worker serves `slow` here: all fifteen waits run together until Prefer: wait ends.
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on("warning", onWarning);
    try {
      const inputs = Array.from({ length: 15 }, (_, i) => ({ text: `waited on ${i}` }));
      const res = await call(inferline.url, "POST", "/api/ml/slow/batch", { inputs }, { prefer: "wait=1" });
      assert.equal(res.status, 202);
      assert.equal((res.body.jobs as unknown[]).length, 15);
      // Warnings are emitted on the next tick.
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(
        warnings.filter((w) => w.startsWith("MaxListenersExceededWarning")),
        [],
      );
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("a batch over the limit is 413; a bad item is 422 naming it", async () => {
    const big = await call(inferline.url, "POST", "/api/ml/sentiment/batch", {
      inputs: Array.from({ length: 21 }, () => ({ text: "x" })),
    });
    assert.equal(big.status, 413);
    assert.equal((big.body.error as { code: string }).code, "batch_too_large");
    const bad = await call(inferline.url, "POST", "/api/ml/sentiment/batch", {
      inputs: [{ text: "ok" }, { text: 5 }, null],
    });
    assert.equal(bad.status, 422);
    assert.match((bad.body.error as { message: string }).message, /inputs\[1\]\.text/);
    // An item that is not an object at all is named by its index alone.
    const problems = (bad.body.error as { details: { problems: { field: string }[] } }).details.problems;
    assert.deepEqual(
      problems.map((p) => p.field),
      ["inputs[1].text", "inputs[2]"],
    );
  });

  it("streams a job's status changes as server-sent events", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/slow", { text: "stream", sleep_ms: 300 });
    const res = await fetch(`${inferline.url}/api/results/${String(r.body.job_id)}/events`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
    const worker = await spawnWorker(testEnv(inferline.prefix, overrides), ["--models", "slow"]);
    try {
      const text = await res.text();
      const views = [...text.matchAll(/^data: (.*)$/gm)].map(
        (m) => JSON.parse(m[1]!) as Record<string, unknown>,
      );
      const statuses = views.map((v) => v.status);
      assert.equal(statuses[0], "queued");
      assert.equal(statuses.at(-1), "completed");
      assert.ok(statuses.includes("active"), `saw ${statuses.join(",")}`);
      // The last event is the view a read gives, field for field.
      const read = await call(inferline.url, "GET", `/api/results/${String(r.body.job_id)}`);
      assert.deepEqual(views.at(-1), read.body);
    } finally {
      await stop(worker);
    }
  });
});

describe("queue cap without a cache lookup", () => {
  const repo = makeRepository({ capped: { limits: { maxQueueDepth: 8 } } });
  const inferline = useInferline("depth-gate", {
    env: {
      MODEL_REPOSITORY: repo.dir,
      AUTH_DISABLED: "true",
      CACHE_ENABLED: "false",
      COALESCE_ENABLED: "false",
      // Long enough that the reading never ages during the test: only depth decides.
      QUEUE_DEPTH_READING_MS: "10000",
    },
  });
  after(() => repo.remove());

  it("skips the admission round trip far below the cap and holds the cap exactly near it", async () => {
    const { result: statuses, commands } = await monitorCommands(async () => {
      const got: number[] = [];
      for (let i = 0; i < 11; i++)
        got.push((await call(inferline.url, "POST", "/api/ml/capped", { value: i })).status);
      return got;
    });
    assert.deepEqual(statuses, [...Array<number>(8).fill(202), 429, 429, 429]);
    // Every admission script reads the model's cache generations. The first request reads the
    // depth (0); the next three find the queue below half the cap without asking; from the
    // fifth on, near the cap, each request is checked in Redis.
    const genKey = `${inferline.prefix}:{capped}:cache:gen`;
    const admissions = commands.filter(
      (c) => c.fromScript && c.args[0]?.toUpperCase() === "HMGET" && c.args[1] === genKey,
    );
    assert.equal(admissions.length, 8);
  });
});

describe("queue cap without a cache lookup, requests arriving together", () => {
  const prefix = uniquePrefix("depth-gate-burst");
  const repo = makeRepository({ burst: { limits: { maxQueueDepth: 10 } } });
  let proxy: DelayingProxy;
  let api: ApiHandle;

  before(async () => {
    // Redis answers every command 30 ms late: a burst of requests all arrive while the adds
    // admitted before them are still unanswered.
    proxy = await delayingProxy(new URL(REDIS_URL), { replyDelayMs: 30 });
    api = await startApi(
      testConfig(prefix, {
        REDIS_URL: proxy.url,
        MODEL_REPOSITORY: repo.dir,
        CACHE_ENABLED: "false",
        COALESCE_ENABLED: "false",
        QUEUE_DEPTH_READING_MS: "10000",
      }),
    );
  });
  after(async () => {
    await api?.close();
    proxy?.server.close();
    await cleanupPrefix(prefix);
    repo.remove();
  });

  it("never pass the cap, whether their checks are skipped or run in Redis", async () => {
    // A first request takes a reading (an empty queue): far below the cap, the next ones may
    // skip the check, each counting the ones admitted before it.
    assert.equal((await call(api.url, "POST", "/api/ml/burst", { value: "first" })).status, 202);
    const statuses = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        call(api.url, "POST", "/api/ml/burst", { value: i }).then((r) => r.status),
      ),
    );
    const accepted = statuses.filter((s) => s === 202).length;
    assert.equal(accepted + statuses.filter((s) => s === 429).length, 60, statuses.join(","));
    const redis = new Redis(REDIS_URL);
    const depth =
      (await redis.zcard(`${prefix}:{burst}:prioritized`)) + (await redis.llen(`${prefix}:{burst}:wait`));
    redis.disconnect();
    assert.equal(depth, accepted + 1, "every job answered 202 is queued");
    assert.ok(depth <= 10, `queue of ${depth} jobs past its cap of 10`);
    assert.ok(accepted >= 4, `only ${accepted} admitted: the cap is 10`);
  });
});

describe("Redis outage and recovery", () => {
  it("a Redis that answers but refuses writes (full, or a replica) is 503 with Retry-After, not 500", async () => {
    const redis = await ownRedis({ aof: false });
    const prefix = uniquePrefix("refusing");
    const lines: Record<string, unknown>[] = [];
    const logger = pino(
      { level: "warn" },
      { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) },
    );
    const api = await startApi(testConfig(prefix, { REDIS_URL: redis.url, AUTH_DISABLED: "true" }), logger);
    const admin = new Redis(redis.url);
    const submissions: [string, unknown, Record<string, string>][] = [
      ["/api/ml/sentiment", { text: "refused" }, {}],
      ["/api/ml/sentiment", { text: "refused, keyed" }, { "idempotency-key": `refused-${prefix}` }],
      ["/api/ml/sentiment/batch", { inputs: [{ text: "refused in a batch" }] }, {}],
    ];
    const expectUnavailable = async (why: string) => {
      for (const [path, body, headers] of submissions) {
        const r = await call(api.url, "POST", path, body, headers);
        assert.equal(r.status, 503, `${why}, ${path}: ${JSON.stringify(r.body)}`);
        assert.equal((r.body.error as { code: string }).code, "service_unavailable");
        assert.ok(Number(r.headers.get("retry-after")) > 0, `${why}, ${path} says when to retry`);
      }
    };
    try {
      assert.equal((await call(api.url, "POST", "/api/ml/sentiment", { text: "before" })).status, 202);
      // Full: the eviction policy a queue needs refuses writes past maxmemory.
      await admin.config("SET", "maxmemory-policy", "noeviction");
      await admin.config("SET", "maxmemory", "1");
      await expectUnavailable("maxmemory reached");
      // The log says why (Redis answered, refusing), not that it is unreachable.
      const refused = lines.filter((l) => l.event === "request_unavailable");
      assert.ok(
        refused.length > 0 && refused.every((l) => /OOM/.test(String(l.err))),
        JSON.stringify(refused[0]),
      );
      await admin.config("SET", "maxmemory", "0");
      // A replica, as a failed-over primary becomes: it reads but refuses writes.
      await admin.replicaof("127.0.0.1", String(await freePort()));
      await expectUnavailable("read-only replica");
      await admin.replicaof("NO", "ONE");
      assert.equal((await call(api.url, "POST", "/api/ml/sentiment", { text: "after" })).status, 202);
    } finally {
      admin.disconnect();
      await api.close();
      await redis.destroy();
    }
  });

  it("answers 503 with Retry-After within a second while Redis is down, and resumes when it returns", async () => {
    const redis = await ownRedis({ aof: false });
    const prefix = uniquePrefix("outage");
    const env = { REDIS_URL: redis.url, AUTH_DISABLED: "true" };
    const api = await startApi(testConfig(prefix, env));
    const worker = await spawnWorker(testEnv(prefix, env), ["--models", "sentiment"]);
    try {
      const before = await call(
        api.url,
        "POST",
        "/api/ml/sentiment",
        { text: "before" },
        { prefer: "wait=10" },
      );
      assert.equal(before.body.status, "completed");
      await redis.stop("SIGKILL");
      // Submitting, reading a job, and the operators' routes (failed jobs, retry, feedback).
      const requests: [string, string, unknown][] = [
        ["POST", "/api/ml/sentiment", { text: "during" }],
        ["GET", `/api/results/${String(before.body.job_id)}`, undefined],
        ["GET", "/api/admin/jobs/failed", undefined],
        ["POST", `/api/admin/jobs/${String(before.body.job_id)}/retry`, undefined],
        ["POST", `/api/results/${String(before.body.job_id)}/feedback`, { label: "positive" }],
      ];
      for (const [method, path, body] of requests) {
        const t0 = Date.now();
        const down = await call(api.url, method, path, body);
        assert.equal(down.status, 503, `${method} ${path}: ${JSON.stringify(down.body)}`);
        assert.ok(Number(down.headers.get("retry-after")) > 0, `${method} ${path} says when to retry`);
        assert.ok(Date.now() - t0 < 1500, `${method} ${path} answered in ${Date.now() - t0} ms`);
      }
      await redis.start();
      const after = await eventually(
        async () => {
          const r = await call(api.url, "POST", "/api/ml/sentiment", { text: "after" }, { prefer: "wait=5" });
          return r.status === 200 ? r : undefined;
        },
        30_000,
        200,
      );
      assert.equal(after.body.status, "completed");
    } finally {
      await stop(worker);
      await api.close();
      await redis.destroy();
    }
  });
});
