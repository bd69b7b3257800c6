import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { request } from "undici";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { Metrics } from "../../src/telemetry/metrics.js";
import { serveMetrics } from "../../src/telemetry/metrics-server.js";
import { QueueInspector } from "../../src/telemetry/queues.js";
import { WorkerRegistry } from "../../src/telemetry/workers.js";
import { testConfig, testEnv } from "../support/config.js";
import { call, eventually, freePort } from "../support/http.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, ownRedis, REDIS_URL, uniquePrefix } from "../support/redis.js";
import { workerRecord } from "../support/workers.js";
import { promtoolProblems, scrape, value, type Scrape } from "./prom.js";

const ENV = { MODELS: "echo", JOB_ATTEMPTS: "2", STATS_FLUSH_INTERVAL_MS: "100" };

/** A worker's heartbeat record, fresh now. */
const record = (id: string, state: "starting" | "running" | "draining") =>
  workerRecord({ id, pid: 1, host: "h", state });

const predict = (base: string, input: Record<string, unknown>) =>
  call(base, "POST", "/api/ml/echo", input, { prefer: "wait=10" });

describe("Prometheus metrics move by exactly the traffic sent", () => {
  const prefix = uniquePrefix("metrics");
  let api: ApiHandle;
  let worker: Spawned;
  let workerMetrics: string;
  before(async () => {
    const port = await freePort();
    workerMetrics = `http://127.0.0.1:${port}/metrics`;
    api = await startApi(testConfig(prefix, ENV));
    worker = await spawnWorker(testEnv(prefix, { ...ENV, WORKER_METRICS_PORT: String(port) }));
  });
  after(async () => {
    await stop(worker);
    await api.close();
    await cleanupPrefix(prefix);
  });

  it("API and worker counters and histograms", async () => {
    const apiBefore = await scrape(`${api.url}/metrics`);
    const wBefore = await scrape(workerMetrics);

    const ok = 7;
    const bad = 3;
    for (let i = 0; i < ok; i++)
      assert.equal((await predict(api.url, { text: `m-${i}` })).body.status, "completed");
    for (let i = 0; i < bad; i++)
      assert.equal((await predict(api.url, { text: `f-${i}`, fail: "error" })).body.status, "failed");
    assert.equal((await call(api.url, "POST", "/api/ml/echo", { nope: 1 })).status, 422);

    const apiAfter = await scrape(`${api.url}/metrics`);
    const wAfter = await scrape(workerMetrics);
    const delta = (a: Scrape, b: Scrape, name: string, labels: Record<string, string>) =>
      value(a, name, labels) - value(b, name, labels);

    const post = { route: "/api/ml/:model", method: "POST" };
    assert.equal(
      delta(apiAfter, apiBefore, "inferline_http_requests_total", { ...post, status: "200" }),
      ok + bad,
    );
    assert.equal(delta(apiAfter, apiBefore, "inferline_http_requests_total", { ...post, status: "422" }), 1);
    assert.equal(
      value(apiAfter, "inferline_http_request_duration_seconds_count", post) -
        value(apiBefore, "inferline_http_request_duration_seconds_count", post),
      ok + bad + 1,
    );

    const echo = { model: "echo", version: "1" };
    assert.equal(delta(apiAfter, apiBefore, "inferline_jobs_queued_total", echo), ok + bad);
    assert.equal(delta(wAfter, wBefore, "inferline_jobs_completed_total", echo), ok);
    assert.equal(delta(wAfter, wBefore, "inferline_jobs_failed_total", echo), bad);
    // Two attempts each: the first failure is retried, the second is final.
    assert.equal(delta(wAfter, wBefore, "inferline_jobs_retried_total", echo), bad);
    for (const name of ["inferline_job_wait_seconds", "inferline_job_duration_seconds"])
      assert.equal(
        value(wAfter, name + "_count", { model: "echo" }) -
          value(wBefore, name + "_count", { model: "echo" }),
        ok,
      );
    assert.equal(
      value(wAfter, "inferline_inference_seconds_count", echo) -
        value(wBefore, "inferline_inference_seconds_count", echo),
      ok,
    );
    // Sequential requests: one job per batch.
    assert.equal(delta(wAfter, wBefore, "inferline_batch_size_sum", { model: "echo" }), ok);

    // Gauges read on scrape; process metrics with the prefix; the role label on everything.
    assert.equal(value(apiAfter, "inferline_queue_depth", { model: "echo" }), 0);
    assert.equal(apiAfter.families.find((f) => f.name === "inferline_queue_depth")?.type, "GAUGE");
    assert.equal(apiAfter.families.find((f) => f.name === "inferline_http_requests_total")?.type, "COUNTER");
    assert.equal(wAfter.families.find((f) => f.name === "inferline_inference_seconds")?.type, "HISTOGRAM");
    assert.equal(value(apiAfter, "inferline_workers"), 1);
    assert.equal(value(apiAfter, "inferline_redis_up"), 1);
    assert.ok(value(apiAfter, "inferline_process_resident_memory_bytes") > 0);
    assert.ok(value(wAfter, "inferline_process_cpu_seconds_total", { role: "worker" }) > 0);
    for (const f of [...apiAfter.families, ...wAfter.families])
      assert.match(f.name, /^inferline_[a-z0-9_]+$/);
    // Prometheus's own checker, where installed (CI installs it).
    for (const text of [apiAfter.text, wAfter.text]) {
      const problems = promtoolProblems(text);
      if (problems !== undefined) assert.equal(problems, "");
    }
  });

  it("methods outside HTTP's usual few are counted as one, not a series each", async () => {
    const before = await scrape(`${api.url}/metrics`);
    const exotic = ["PROPFIND", "MKCOL", "PURGE", "TRACE", "LOCK"];
    for (const method of exotic) {
      // Any token is a method on the wire; undici types only the usual ones.
      const res = await request(`${api.url}/api/models`, { method: method as "GET" });
      await res.body.dump();
      assert.ok(res.statusCode === 405 || res.statusCode === 404, `${method}: ${res.statusCode}`);
    }
    const after = await scrape(`${api.url}/metrics`);
    const samples = (x: Scrape) =>
      x.families.find((f) => f.name === "inferline_http_requests_total")?.metrics ?? [];
    const methods = new Set(samples(after).map((m) => m.labels?.method));
    for (const method of exotic) assert.ok(!methods.has(method), method);
    const other = (x: Scrape) =>
      samples(x)
        .filter((m) => m.labels?.method === "OTHER")
        .reduce((sum, m) => sum + Number(m.value), 0);
    assert.equal(other(after) - other(before), exotic.length);
  });

  it("inferline_queue_depth and the oldest job age count jobs nobody takes", async () => {
    await stop(worker);
    for (let i = 0; i < 3; i++)
      assert.equal((await call(api.url, "POST", "/api/ml/echo", { text: `q-${i}` })).status, 202);
    await new Promise((r) => setTimeout(r, 300));
    const m = await scrape(`${api.url}/metrics`);
    assert.equal(value(m, "inferline_queue_depth", { model: "echo" }), 3);
    assert.ok(value(m, "inferline_queue_oldest_job_age_seconds", { model: "echo" }) >= 0.3);
    worker = await spawnWorker(testEnv(prefix, ENV));
  });
});

describe("a job that expires before a worker starts it", () => {
  const prefix = uniquePrefix("metrics-expired");
  let api: ApiHandle;
  let worker: Spawned | undefined;
  before(async () => {
    api = await startApi(testConfig(prefix, ENV));
  });
  after(async () => {
    if (worker) await stop(worker);
    await api.close();
    await cleanupPrefix(prefix);
  });

  it("is counted as expired in /metrics and /api/stats, not as a failure, and logs its end", async () => {
    // No worker yet: the deadline passes while the job waits.
    const headers = { "x-request-id": "req-expired-1" };
    const r = await call(api.url, "POST", "/api/ml/echo?timeout_ms=50", { text: "too late" }, headers);
    assert.equal(r.status, 202);
    const id = r.body.job_id as string;
    await sleep(200);
    const port = await freePort();
    worker = await spawnWorker(testEnv(prefix, { ...ENV, WORKER_METRICS_PORT: String(port) }));
    await eventually(
      async () => (await call(api.url, "GET", `/api/results/${id}`)).body.status === "expired",
      10_000,
    );

    const ended = await worker.waitForLine((l) => l.event === "job_failed" && l.job_id === id);
    assert.equal(ended.code, "expired");
    assert.equal(ended.request_id, "req-expired-1");
    assert.equal(ended.model, "echo");
    assert.equal(ended.attempt, 1);
    assert.equal(typeof ended.duration_ms, "number");

    const echo = { model: "echo", version: "1" };
    const m = await scrape(`http://127.0.0.1:${port}/metrics`);
    assert.equal(value(m, "inferline_jobs_expired_total", echo), 1);
    assert.equal(value(m, "inferline_jobs_failed_total", echo), 0);
    assert.equal(value(m, "inferline_jobs_completed_total", echo), 0);
    const stats = await eventually(async () => {
      const s = (await call(api.url, "GET", "/api/stats?window=5m")).body as {
        submitted: number;
        expired: number;
        failed: number;
        models: Record<string, { expired: number }>;
      };
      return s.expired === 1 ? s : undefined;
    }, 10_000);
    assert.equal(stats.submitted, 1);
    assert.equal(stats.failed, 0);
    assert.equal(stats.models.echo!.expired, 1);
    // The client's deadline is no error of the service's.
    const health = (await call(api.url, "GET", "/health")).body as { errors: { jobs: number } };
    assert.equal(health.errors.jobs, 0);
  });

  it("ended by the API before any worker took them: expired once read, canceled on DELETE", async () => {
    await stop(worker!);
    worker = undefined;
    const before = await scrape(`${api.url}/metrics`);
    const late = await call(api.url, "POST", "/api/ml/echo?timeout_ms=50", { text: "late again" });
    const unwanted = await call(api.url, "POST", "/api/ml/echo", { text: "never mind" });
    await sleep(200);
    // Read past its deadline, the job is ended there and then; read again, it is not counted again.
    for (let i = 0; i < 2; i++)
      assert.equal(
        (await call(api.url, "GET", `/api/results/${String(late.body.job_id)}`)).body.status,
        "expired",
      );
    for (let i = 0; i < 2; i++)
      assert.equal(
        (await call(api.url, "DELETE", `/api/results/${String(unwanted.body.job_id)}`)).status,
        200,
      );

    const echo = { model: "echo", version: "1" };
    const after = await scrape(`${api.url}/metrics`);
    const delta = (name: string) => value(after, name, echo) - value(before, name, echo);
    assert.equal(delta("inferline_jobs_expired_total"), 1);
    assert.equal(delta("inferline_jobs_canceled_total"), 1);
    // With the first test's job: 3 submitted, 2 expired (one by the worker), 1 canceled.
    const stats = await eventually(async () => {
      const s = (await call(api.url, "GET", "/api/stats?window=5m")).body as {
        submitted: number;
        expired: number;
        canceled: number;
      };
      return s.expired === 2 && s.canceled === 1 ? s : undefined;
    }, 10_000);
    assert.equal(stats.submitted, 3);
  });
});

describe("a job whose workers keep dying", () => {
  const prefix = uniquePrefix("metrics-worker-lost");
  // The first stall is one too many: a job whose worker dies fails (worker_lost) once noticed.
  const env = {
    ...ENV,
    WORKER_LOCK_DURATION_MS: "1000",
    WORKER_STALLED_INTERVAL_MS: "500",
    WORKER_MAX_STALLED_COUNT: "0",
  };
  let api: ApiHandle;
  const workers: Spawned[] = [];
  before(async () => {
    api = await startApi(testConfig(prefix, env));
  });
  after(async () => {
    await Promise.all(workers.map((w) => stop(w)));
    await api.close();
    await cleanupPrefix(prefix);
  });

  it("fails worker_lost, and is counted and logged as failed by the worker that fails it", async () => {
    const first = await spawnWorker(testEnv(prefix, env));
    workers.push(first);
    const headers = { "x-request-id": "req-lost-1" };
    const r = await call(api.url, "POST", "/api/ml/echo", { text: "doomed", sleep_ms: 20_000 }, headers);
    assert.equal(r.status, 202);
    const id = r.body.job_id as string;
    await first.waitForLine((l) => l.event === "job_started" && l.job_id === id);
    first.kill("SIGKILL");
    await first.exited;

    const port = await freePort();
    const second = await spawnWorker(testEnv(prefix, { ...env, WORKER_METRICS_PORT: String(port) }));
    workers.push(second);
    const result = await eventually(async () => {
      const b = (await call(api.url, "GET", `/api/results/${id}`)).body;
      return b.status === "failed" ? b : undefined;
    }, 20_000);
    assert.equal((result.error as { code: string }).code, "worker_lost");

    const failed = await second.waitForLine((l) => l.event === "job_failed" && l.job_id === id);
    assert.equal(failed.code, "worker_lost");
    assert.equal(failed.request_id, "req-lost-1");
    assert.equal(failed.model, "echo");
    const echo = { model: "echo", version: "1" };
    const m = await scrape(`http://127.0.0.1:${port}/metrics`);
    assert.equal(value(m, "inferline_jobs_failed_total", echo), 1);
    const stats = await eventually(async () => {
      const s = (await call(api.url, "GET", "/api/stats?window=5m")).body as { failed: number };
      return s.failed === 1 ? s : undefined;
    }, 10_000);
    assert.equal(stats.failed, 1);
    const health = (await call(api.url, "GET", "/health")).body as { errors: { failed: number } };
    assert.equal(health.errors.failed, 1);
  });
});

describe("stats from two API processes merge in /api/stats", () => {
  const prefix = uniquePrefix("stats-merge");
  let a: ApiHandle;
  let b: ApiHandle;
  let worker: Spawned;
  before(async () => {
    a = await startApi(testConfig(prefix, ENV));
    b = await startApi(testConfig(prefix, ENV));
    worker = await spawnWorker(testEnv(prefix, ENV));
  });
  after(async () => {
    await stop(worker);
    await Promise.all([a.close(), b.close()]);
    await cleanupPrefix(prefix);
  });

  it("requests counted by both APIs and jobs by the worker add up exactly", async () => {
    for (let i = 0; i < 4; i++) assert.equal((await predict(a.url, { text: `a-${i}` })).status, 200);
    for (let i = 0; i < 6; i++) assert.equal((await predict(b.url, { text: `b-${i}` })).status, 200);
    assert.equal((await predict(b.url, { text: "b-bad", fail: "error" })).body.status, "failed");

    // Each /api/stats call is itself a request, counted once it has answered.
    let calls = 0;
    const stats = await eventually(async () => {
      const r = await call(calls % 2 === 0 ? a.url : b.url, "GET", "/api/stats?window=5m");
      const expectedRequests = 11 + calls++;
      const s = r.body as {
        submitted: number;
        completed: number;
        failed: number;
        requests: { total: number };
      };
      return s.completed === 10 && s.failed === 1 && s.requests.total === expectedRequests
        ? r.body
        : undefined;
    }, 10_000);

    const s = stats as {
      retried: number;
      error_rate: number;
      latency_ms: Record<string, { count: number; p50_ms: number; p99_ms: number }>;
      batch: { batches: number; avg_size: number };
      models: Record<string, { completed: number; versions: Record<string, { completed: number }> }>;
      series: { completed: number; failed: number; total_p50_ms: number | null }[];
    };
    assert.equal(s.retried, 1);
    assert.equal(s.error_rate, Math.round((1 / 11) * 1000) / 1000);
    for (const k of ["wait", "inference", "total"]) {
      assert.equal(s.latency_ms[k]!.count, 10);
      assert.ok(s.latency_ms[k]!.p99_ms >= s.latency_ms[k]!.p50_ms);
    }
    assert.ok(s.latency_ms.total!.p50_ms > 0);
    assert.equal(s.batch.batches, 10);
    assert.equal(s.batch.avg_size, 1);
    assert.equal(s.models.echo!.completed, 10);
    assert.equal(s.models.echo!.versions["1"]!.completed, 10);
    assert.equal(s.series.length, 5);
    assert.equal(
      s.series.reduce((n, p) => n + p.completed, 0),
      10,
    );
    assert.equal((await call(a.url, "GET", "/api/stats?window=2d")).status, 400);
  });
});

describe("inferline_workers counts live workers, as health does", () => {
  const prefix = uniquePrefix("metrics-live");
  let api: ApiHandle;
  let redis: Redis;
  before(async () => {
    api = await startApi(testConfig(prefix, ENV));
    redis = new Redis(REDIS_URL);
  });
  after(async () => {
    redis.disconnect();
    await api.close();
    await cleanupPrefix(prefix);
  });

  it("a worker still starting or already draining takes no jobs: it is not counted", async () => {
    // The API reads heartbeats younger than 3 heartbeat intervals (testEnv: 500 ms).
    const workers = new WorkerRegistry(redis, prefix, 1500);
    await workers.publish(record("w-starting", "starting"));
    await workers.publish(record("w-draining", "draining"));
    const m = await scrape(`${api.url}/metrics`);
    const h = (await call(api.url, "GET", "/health")).body as { system: { active_workers: number } };
    assert.equal(h.system.active_workers, 0);
    assert.equal(value(m, "inferline_workers"), 0);

    await workers.publish(record("w-running", "running"));
    await sleep(200);
    assert.equal(value(await scrape(`${api.url}/metrics`), "inferline_workers"), 1);
  });
});

describe("scrape gauges while Redis is away", () => {
  it("inferline_workers drops to 0 with inferline_redis_up, not the last count seen", async () => {
    const own = await ownRedis({ aof: false });
    // The API's kind of connection: commands fail at once while Redis is away.
    const redis = new Redis(own.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    redis.on("error", () => {});
    const prefix = uniquePrefix("metrics-away");
    const queues = new QueueInspector(redis, prefix);
    try {
      await new Promise((resolve) => redis.once("ready", resolve));
      const workers = new WorkerRegistry(redis, prefix, 60_000);
      await workers.publish(record("w1", "running"));
      const metrics = new Metrics("api", async () => ({
        models: await queues.read(["echo"]),
        workers: (await workers.list()).length,
      }));
      const gauge = (text: string, name: string) =>
        new RegExp(`^${name}\\{role="api"\\} (\\S+)$`, "m").exec(text)?.[1];

      let text = await metrics.text();
      assert.equal(gauge(text, "inferline_workers"), "1");
      assert.equal(gauge(text, "inferline_redis_up"), "1");
      assert.match(text, /^inferline_queue_depth\{model="echo",role="api"\} 0$/m);

      await own.stop();
      while (redis.status === "ready") await sleep(20);
      // A reading is shared by the gauges of one scrape for 100 ms.
      await sleep(200);
      text = await metrics.text();
      assert.equal(gauge(text, "inferline_redis_up"), "0");
      assert.equal(gauge(text, "inferline_workers"), "0");
      assert.doesNotMatch(text, /^inferline_queue_depth\{/m);
    } finally {
      redis.disconnect();
      await queues.close();
      await own.destroy();
    }
  });
});

describe("a worker's job counters before its first job", () => {
  const prefix = uniquePrefix("metrics-zero");
  let worker: Spawned | undefined;
  after(async () => {
    if (worker) await stop(worker);
    await cleanupPrefix(prefix);
  });

  it("exist at 0 for every version it serves, so rate() sees the first failure", async () => {
    const port = await freePort();
    worker = await spawnWorker(testEnv(prefix, { ...ENV, WORKER_METRICS_PORT: String(port) }));
    const m = await scrape(`http://127.0.0.1:${port}/metrics`);
    const echo = { model: "echo", version: "1" };
    for (const name of [
      "inferline_jobs_completed_total",
      "inferline_jobs_failed_total",
      "inferline_jobs_retried_total",
      "inferline_jobs_expired_total",
    ])
      assert.equal(value(m, name, echo), 0, name);
  });
});

describe("worker metrics endpoint", () => {
  it("serves /metrics on its port, 404 elsewhere; a port already taken is reported, not fatal", async () => {
    const metrics = new Metrics("worker");
    metrics.jobsCompleted.inc({ model: "m", version: "1" }, 3);
    const port = await freePort();
    const first = await serveMetrics(metrics, "127.0.0.1", port);
    assert.ok(first);
    try {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(text, /^inferline_jobs_completed_total\{model="m",version="1",role="worker"\} 3$/m);
      const other = await fetch(`http://127.0.0.1:${port}/other`);
      assert.equal(other.status, 404);
      assert.match(other.headers.get("content-type") ?? "", /^application\/json/);
      assert.equal(((await other.json()) as { error: { code: string } }).error.code, "route_not_found");
      const post = await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST" });
      assert.equal(post.status, 405);
      assert.equal(post.headers.get("allow"), "GET, HEAD");
      assert.equal(await serveMetrics(new Metrics("worker"), "127.0.0.1", port), undefined);
    } finally {
      first.close();
    }
  });
});
