import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { HealthService } from "../../src/telemetry/health.js";
import { QueueInspector } from "../../src/telemetry/queues.js";
import { StatsReader } from "../../src/telemetry/stats-report.js";
import { WorkerRegistry } from "../../src/telemetry/workers.js";
import { testConfig, testEnv } from "../support/config.js";
import { call, eventually } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { CLI, spawnCli, spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, ownRedis, REDIS_URL, uniquePrefix, type OwnRedis } from "../support/redis.js";
import { delayingProxy } from "../support/redis-proxy.js";

interface Health {
  status: string;
  reasons: string[];
}

async function health(base: string): Promise<{ body: Health; ready: number; live: number }> {
  const [h, r, l] = await Promise.all([
    call(base, "GET", "/health"),
    call(base, "GET", "/health/ready"),
    call(base, "GET", "/health/live"),
  ]);
  return { body: h.body as unknown as Health, ready: r.status, live: l.status };
}

/** Polls until /health reports `status`, then returns the reading. */
function until(base: string, status: string, ms = 15_000) {
  return eventually(async () => {
    const h = await health(base);
    return h.body.status === status ? h : undefined;
  }, ms);
}

const ONLY_ECHO = { MODELS: "echo", JOB_ATTEMPTS: "1" };

describe("health states, each caused for real", () => {
  describe("warm-up, healthy, degraded and unhealthy as workers come and go", () => {
    // The tests start and kill this worker; should one fail half way, this `after` stops it before
    // useInferline's closes the API (hooks run in the order they were registered).
    let worker: Spawned | undefined;
    after(async () => {
      if (worker) await stop(worker);
    });
    const inferline = useInferline("health-life", { env: { ...ONLY_ECHO, HEALTH_WARMUP_MS: "60000" } });

    it("a fresh process with no worker yet is warming_up and not ready, but live", async () => {
      const h = await health(inferline.url);
      assert.equal(h.body.status, "warming_up");
      assert.match(h.body.reasons.join("\n"), /waiting for workers/);
      assert.equal(h.ready, 503);
      assert.equal(h.live, 200);
    });

    it("idle with a live worker: healthy and ready", async () => {
      worker = await spawnWorker(testEnv(inferline.prefix, ONLY_ECHO));
      const h = await until(inferline.url, "healthy");
      assert.deepEqual(h.body.reasons, []);
      assert.equal(h.ready, 200);
      const full = (await call(inferline.url, "GET", "/health")).body as Record<
        string,
        Record<string, unknown>
      >;
      assert.equal(full.system!.active_workers, 1);
      assert.equal((full.models!.echo as { workers: number }).workers, 1);
      for (const k of ["depth", "retrying", "failed", "avg_processing_ms", "oldest_waiting_age_seconds"])
        assert.ok(k in full.queue!, `queue.${k}`);
      for (const k of ["hit_rate", "hits", "misses"]) assert.ok(k in full.cache!, `cache.${k}`);
    });

    it("all workers killed: degraded while nothing waits, unhealthy once jobs wait", async () => {
      worker!.kill("SIGKILL");
      await worker!.exited;
      worker = undefined;
      // The heartbeat expires after three intervals; then nobody serves echo.
      let h = await until(inferline.url, "degraded");
      assert.match(h.body.reasons.join("\n"), /no active worker/);
      assert.equal(h.ready, 200);

      const queued = await call(inferline.url, "POST", "/api/ml/echo", { text: "nobody home" });
      assert.equal(queued.status, 202);
      h = await until(inferline.url, "unhealthy");
      assert.match(h.body.reasons.join("\n"), /1 job\(s\) waiting for echo and no live worker/);
      // Every API process sees this at once: out of rotation, they would all stop answering.
      assert.equal(h.ready, 200, "a fleet-wide problem leaves the process in rotation");
      assert.equal(h.live, 200);
      const full = (await call(inferline.url, "GET", "/health")).body as Record<
        string,
        Record<string, number>
      >;
      assert.equal(full.queue!.depth, 1);
      assert.ok(full.queue!.oldest_waiting_age_seconds! > 0);
    });
  });

  describe("error rate over the recent-jobs window", () => {
    const env = { ...ONLY_ECHO, STATS_FLUSH_INTERVAL_MS: "100", HEALTH_ERROR_MIN_JOBS: "10" };
    const inferline = useInferline("health-errors", { env, worker: true });

    const send = (n: number, fail: boolean, tag: string) =>
      Promise.all(
        Array.from({ length: n }, (_, i) =>
          call(
            inferline.url,
            "POST",
            "/api/ml/echo",
            fail ? { text: `${tag}-${i}`, fail: "error" } : { text: `${tag}-${i}` },
            { prefer: "wait=10" },
          ).then((r) => assert.equal(r.body.status, fail ? "failed" : "completed")),
        ),
      );

    it("over 5% failed: degraded, still ready", async () => {
      await until(inferline.url, "healthy");
      await send(18, false, "ok");
      await send(2, true, "bad"); // 10%
      const h = await until(inferline.url, "degraded");
      assert.match(h.body.reasons.join("\n"), /error rate 10\.0% of the last 20 jobs failed/);
      assert.equal(h.ready, 200);
    });

    it("over 20% failed: unhealthy, still ready (the other models and routes still work)", async () => {
      await send(4, true, "worse"); // 6 of 24 = 25%
      const h = await until(inferline.url, "unhealthy");
      assert.match(h.body.reasons.join("\n"), /error rate 25\.0% of the last 24 jobs failed/);
      assert.equal(h.ready, 200);
    });
  });

  describe("queue depth over HEALTH_QUEUE_DEPTH_DEGRADED", () => {
    // One job at a time: a long job holds the worker, the jobs after it wait; the worker is live
    // throughout, so the depth is the only thing wrong.
    const env = {
      ...ONLY_ECHO,
      HEALTH_QUEUE_DEPTH_DEGRADED: "2",
      WORKER_CONCURRENCY: "1",
      WORKER_SHUTDOWN_TIMEOUT_MS: "1000",
    };
    const inferline = useInferline("health-depth", { env, worker: true });

    const depth = async () => {
      const full = (await call(inferline.url, "GET", "/health")).body as Record<
        string,
        Record<string, number>
      >;
      return full.queue!;
    };
    const submit = async (text: string, extra: Record<string, unknown> = {}) => {
      const r = await call(inferline.url, "POST", "/api/ml/echo", { text, ...extra });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      return r.body.job_id as string;
    };

    it("at the threshold: healthy; one job over it: degraded, ready, and says why", async () => {
      await until(inferline.url, "healthy");
      await submit("holds the only slot", { sleep_ms: 30_000 });
      await eventually(async () => (await depth()).active === 1);
      await submit("waits 1");
      const second = await submit("waits 2");
      await eventually(async () => (await depth()).depth === 2);
      let h = await health(inferline.url);
      assert.equal(h.body.status, "healthy", "2 waiting is not over a threshold of 2");
      assert.deepEqual(h.body.reasons, []);

      await submit("waits 3");
      h = await until(inferline.url, "degraded");
      assert.deepEqual(h.body.reasons, ["queue depth 3 over 2"]);
      assert.equal(h.ready, 200, "a deep queue is reported, not a reason to stop serving");
      assert.equal(h.live, 200);

      // Back to 2 waiting (one canceled): healthy again.
      assert.equal((await call(inferline.url, "DELETE", `/api/results/${second}`)).status, 200);
      h = await until(inferline.url, "healthy");
      assert.deepEqual(h.body.reasons, []);
      assert.equal((await depth()).depth, 2);
    });
  });

  describe("API process memory over HEALTH_MEMORY_MAX_RATIO", () => {
    // Without a cgroup memory limit the ratio is the API process's used V8 heap against its heap
    // limit (with one: RSS against the cgroup limit). A 32 MB old space puts a running API at
    // about a third of its heap limit: over 0.1, well under the default 0.9.
    const node = ["--max-old-space-size=32", CLI];
    const prefixes = [uniquePrefix("health-mem-over"), uniquePrefix("health-mem-under")];
    let over: Spawned;
    let under: Spawned;
    before(() => {
      over = spawnCli(
        ["api"],
        testEnv(prefixes[0]!, { ...ONLY_ECHO, LOG_LEVEL: "info", HEALTH_MEMORY_MAX_RATIO: "0.1" }),
        {
          node,
        },
      );
      under = spawnCli(["api"], testEnv(prefixes[1]!, { ...ONLY_ECHO, LOG_LEVEL: "info" }), { node });
    });
    after(async () => {
      await Promise.all([stop(over), stop(under)]);
      for (const p of prefixes) await cleanupPrefix(p);
    });

    const started = async (p: Spawned) =>
      String((await p.waitForLine((l) => l.event === "api_started", 30_000)).url);
    const memoryOf = async (base: string) =>
      ((await call(base, "GET", "/health")).body as { system: { memory: { ratio: number; basis: string } } })
        .system.memory;

    it("over it: unhealthy and not ready (live); the same heap under the default 0.9: ready", async (t) => {
      const [overUrl, underUrl] = await Promise.all([started(over), started(under)]);
      if ((await memoryOf(overUrl)).basis === "rss")
        return t.skip("a cgroup memory limit is set: the ratio is RSS against it, which a test cannot raise");

      const h = await until(overUrl, "unhealthy");
      const memory = await memoryOf(overUrl);
      assert.equal(memory.basis, "heap");
      assert.ok(memory.ratio > 0.1, `ratio ${memory.ratio}`);
      assert.match(h.body.reasons[0] ?? "", /^memory at \d+% of its limit$/);
      assert.equal(h.ready, 503, "this process's own memory takes it out of rotation");
      assert.equal(h.live, 200);

      // Same heap limit, default threshold (0.9): only the missing worker is reported.
      const u = await until(underUrl, "degraded");
      assert.deepEqual(u.body.reasons, ["no active worker"]);
      assert.equal(u.ready, 200);
      const ratio = (await memoryOf(underUrl)).ratio;
      assert.ok(ratio > 0.1 && ratio < 0.9, `ratio ${ratio}`);
    });
  });

  describe("cache hit rate once there are enough lookups", () => {
    const env = { MODELS: "sentiment", STATS_FLUSH_INTERVAL_MS: "100", HEALTH_CACHE_MIN_LOOKUPS: "10" };
    const inferline = useInferline("health-cache", { env, worker: true });

    const ask = (text: string) =>
      call(inferline.url, "POST", "/api/ml/sentiment", { text }, { prefer: "wait=10" });

    it("under 20% hits: degraded; repeated inputs lift it back to healthy", async () => {
      await until(inferline.url, "healthy");
      for (let i = 0; i < 10; i++) assert.equal((await ask(`a different sentence, number ${i}`)).status, 200);
      let h = await until(inferline.url, "degraded");
      assert.match(h.body.reasons.join("\n"), /cache hit rate 0\.0% under 20%/);
      assert.equal(h.ready, 200);
      for (let i = 0; i < 10; i++) assert.equal((await ask("the same sentence again")).status, 200);
      h = await until(inferline.url, "healthy"); // 9 hits of 20 lookups
      assert.deepEqual(h.body.reasons, []);
    });
  });

  describe("Redis stops", () => {
    let redis: OwnRedis;
    let api: ApiHandle;
    let worker: Spawned;
    const prefix = uniquePrefix("health-redis");
    before(async () => {
      // A Redis of this test's own: stopping the shared one would break every other test.
      redis = await ownRedis({ aof: false });
      api = await startApi(testConfig(prefix, { ...ONLY_ECHO, REDIS_URL: redis.url }));
      worker = await spawnWorker(testEnv(prefix, { ...ONLY_ECHO, REDIS_URL: redis.url }));
    });
    after(async () => {
      worker.kill("SIGKILL");
      await worker.exited;
      await api.close();
      await redis.destroy();
    });

    it("healthy while it runs; unhealthy and not ready once it is gone; live all along", async () => {
      await until(api.url, "healthy");
      await redis.stop("SIGTERM");
      const h = await until(api.url, "unhealthy");
      assert.match(h.body.reasons.join("\n"), /Redis unreachable/);
      assert.equal(h.ready, 503);
      assert.equal(h.live, 200);
    });
  });

  describe("a Redis that would evict keys, or is full", () => {
    let redis: OwnRedis;
    let admin: Redis;
    let api: Spawned;
    before(async () => {
      // A Redis of this test's own: the shared one is never reconfigured.
      redis = await ownRedis({ aof: false });
      admin = new Redis(redis.url);
      await admin.config("SET", "maxmemory-policy", "allkeys-lru");
      api = spawnCli(
        ["api"],
        testEnv(uniquePrefix("health-evict"), { ...ONLY_ECHO, REDIS_URL: redis.url, LOG_LEVEL: "info" }),
      );
    });
    after(async () => {
      await stop(api);
      admin.disconnect();
      await redis.destroy();
    });

    it("is warned about at start and keeps health degraded until it is noeviction", async () => {
      const warned = await api.waitForLine((l) => l.event === "redis_eviction_policy", 30_000);
      assert.equal(warned.level, "warn");
      assert.match(String(warned.msg), /allkeys-lru.*noeviction/);
      const base = String((await api.waitForLine((l) => l.event === "api_started", 30_000)).url);
      const h = await until(base, "degraded");
      assert.match(h.body.reasons.join("\n"), /maxmemory-policy is allkeys-lru/);
      assert.equal(h.ready, 200, "a Redis that could evict is reported, not a reason to stop serving");
      const checks = (h.body as unknown as { checks: Record<string, unknown> }).checks;
      assert.equal(checks.redis_maxmemory_policy, "allkeys-lru");

      await admin.config("SET", "maxmemory-policy", "noeviction");
      await eventually(async () => {
        const now = await health(base);
        return !now.body.reasons.some((r) => r.includes("maxmemory-policy"));
      });
    });

    it("at its maxmemory: unhealthy with the reason until memory is there again", async () => {
      const base = String((await api.waitForLine((l) => l.event === "api_started", 30_000)).url);
      await admin.config("SET", "maxmemory", "1");
      try {
        const h = await until(base, "unhealthy");
        assert.match(h.body.reasons.join("\n"), /Redis is full/);
        // Every process sees it at once; results and cached answers still work: in rotation.
        assert.equal(h.ready, 200);
        // Prometheus sees it too (InferlineUnhealthy), while Redis still counts as up.
        const metrics = await (await fetch(`${base}/metrics`)).text();
        assert.match(metrics, /^inferline_health_status\{status="unhealthy",role="api"\} 1$/m);
        assert.match(metrics, /^inferline_health_status\{status="healthy",role="api"\} 0$/m);
        assert.match(metrics, /^inferline_redis_up\{role="api"\} 1$/m);
      } finally {
        await admin.config("SET", "maxmemory", "0");
      }
      await eventually(async () => {
        const now = await health(base);
        return !now.body.reasons.some((r) => r.includes("Redis is full"));
      });
    });
  });

  describe("Redis slower than the check may wait", () => {
    const prefix = uniquePrefix("health-slow");
    let proxy: Awaited<ReturnType<typeof delayingProxy>>;
    let redis: Redis;
    let queues: QueueInspector;
    before(async () => {
      proxy = await delayingProxy(new URL(REDIS_URL));
      // No command timeout: only the check's own deadline bounds it.
      redis = new Redis(proxy.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
      await new Promise((resolve) => redis.once("ready", resolve));
      queues = new QueueInspector(redis, prefix);
    });
    after(async () => {
      await queues.close();
      redis.disconnect();
      proxy.server.close();
      await cleanupPrefix(prefix);
    });

    it("probes share the round of reads in flight and answer by the deadline", async () => {
      const workers = new WorkerRegistry(redis, prefix, 60_000);
      // Counts the rounds of reads (each lists the workers) and how many run at once.
      let rounds = 0;
      let inFlight = 0;
      let most = 0;
      const list = workers.list.bind(workers);
      workers.list = async () => {
        rounds++;
        most = Math.max(most, ++inFlight);
        try {
          return await list();
        } finally {
          inFlight--;
        }
      };
      const health = new HealthService({
        redis,
        prefix,
        workers,
        queues,
        stats: new StatsReader(redis, prefix),
        models: () => ["echo"],
        timeoutMs: 300,
        thresholds: {
          warmupMs: 0,
          errorWindowJobs: 100,
          errorWindowMs: 300_000,
          errorMinJobs: 10,
          errorRateDegraded: 0.05,
          errorRateUnhealthy: 0.2,
          queueDepthDegraded: 1000,
          cacheHitRateMin: 0.2,
          cacheMinLookups: 100,
          memoryMaxRatio: 0.99,
        },
      });

      proxy.replyDelay.ms = 1500;
      const first = await health.readiness();
      // Answered while its reads are still out: the deadline, not Redis, ended the check.
      assert.equal(inFlight, 1);
      assert.equal(first.ready, false);
      assert.equal(first.status, "unhealthy");
      assert.match(first.reasons.join("\n"), /Redis did not answer within 300 ms/);

      // A probe every 100 ms for 3 s (longer on a loaded machine: the bound counts real time).
      const probes: ReturnType<HealthService["readiness"]>[] = [];
      const t0 = Date.now();
      for (let i = 0; i < 30; i++) {
        probes.push(health.readiness());
        await sleep(100);
      }
      for (const p of await Promise.all(probes)) assert.equal(p.ready, false);
      const elapsed = Date.now() - t0;
      assert.equal(most, 1, "never two rounds of reads at once");
      // One round at a time, each 1.5 s long: at most one per 1.5 s, plus the one in flight.
      const bound = Math.ceil(elapsed / 1500) + 1;
      assert.ok(
        rounds <= bound && rounds < 30 / 3,
        `${rounds} rounds of reads for 31 probes in ${elapsed} ms`,
      );

      // Redis quick again: the check sees it (no worker, nothing waiting: degraded, ready).
      proxy.replyDelay.ms = 0;
      const back = await eventually(async () => {
        const r = await health.readiness();
        return r.ready ? r : undefined;
      });
      assert.equal(back.status, "degraded");
    });
  });
});
