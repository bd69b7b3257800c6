import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { closedLoop, type Scenario } from "../lib.js";
import { sleep } from "../support/http.js";
import { benchEnv, startStack } from "../support/processes.js";
import { rssBytes } from "../support/procstat.js";
import { cleanupPrefix, countPrefix, usedMemory } from "../support/redis.js";

const PER_REQUEST = 100;

const MIB = 2 ** 20;
const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/**
 * Soak: a long stream of distinct echo jobs through one API and one worker process, sent as
 * batch requests of 100 inputs with `Prefer: wait` (so the load waits for its results and the
 * queue never runs away), 16 requests in flight. RSS of both processes and Redis used_memory are
 * sampled every second; results are retained RESULT_RETENTION_SECONDS = 10 (3 with --quick), so Redis holds
 * about 10 s of jobs at any time and returns to its starting size once the run is over.
 * A leak shows as RSS that keeps climbing after warm-up; flat (within noise) means none.
 */
export const run: Scenario = async (ctx) => {
  const jobs = ctx.quick ? 3000 : 200_000;
  const RETENTION_S = ctx.quick ? 3 : 10;
  const requests = jobs / PER_REQUEST;
  const inFlight = 16;
  const prefix = `bench-soak-${randomBytes(3).toString("hex")}`;
  const env = benchEnv(ctx.redisUrl, prefix, {
    MODELS: "echo",
    RESULT_RETENTION_SECONDS: String(RETENTION_S),
    BATCH_MAX_ITEMS: String(PER_REQUEST),
  });
  const redis = new Redis(ctx.redisUrl, { maxRetriesPerRequest: 1 });
  const samples: {
    t_s: number;
    api_rss_mib: number;
    worker_rss_mib: number;
    redis_used_mib: number;
    jobs_done: number;
  }[] = [];
  let memBefore: number;
  let memEnd: number;
  let memAfter: number;
  let keysEnd: number;
  let keysAfter: number;
  let done = 0;
  let failed = 0;
  // Batch answers other than 200 (retried ones included), by status and error code or job state.
  const failures: Record<string, number> = {};
  let retries = 0;
  let durationS: number;
  const stack = await startStack(env, ["--concurrency", "128"]);
  const BASE = stack.url;
  try {
    memBefore = await usedMemory(redis);
    const t0 = performance.now();
    let sampling = false;
    const timer = setInterval(() => {
      if (sampling) return;
      sampling = true;
      void usedMemory(redis)
        .then((used) => {
          samples.push({
            t_s: Math.round((performance.now() - t0) / 100) / 10,
            api_rss_mib: rssBytes(stack.api.pid!) / MIB,
            worker_rss_mib: rssBytes(stack.worker.pid!) / MIB,
            redis_used_mib: used / MIB,
            jobs_done: done,
          });
        })
        .catch(() => undefined)
        .finally(() => (sampling = false));
    }, 1000);
    const tag = randomBytes(4).toString("hex");
    try {
      const r = await closedLoop(
        inFlight,
        requests,
        async (b) => {
          const inputs = Array.from({ length: PER_REQUEST }, (_, i) => ({
            text: `soak ${tag} ${b * PER_REQUEST + i}`,
          }));
          // A 503/429 carries Retry-After: do what a client should (the same inputs again, up
          // to 3 times; jobs already accepted are coalesced, not run twice) and count it.
          for (let attempt = 1; ; attempt++) {
            const res = await fetch(`${BASE}/api/ml/echo/batch`, {
              method: "POST",
              headers: { "content-type": "application/json", prefer: "wait=60" },
              body: JSON.stringify({ inputs }),
            });
            const body = (await res.json()) as { jobs?: { status?: string }[]; error?: { code?: string } };
            if (res.status === 200 || (res.status !== 503 && res.status !== 429) || attempt > 3) {
              const ok = (body.jobs ?? []).filter((j) => j.status === "completed").length;
              done += ok;
              failed += PER_REQUEST - ok;
              if (res.status === 200) return;
            }
            const why = `HTTP ${res.status} ${body.error?.code ?? (body.jobs ?? []).map((j) => j.status).find((st) => st !== "completed") ?? ""}`;
            failures[why] = (failures[why] ?? 0) + 1;
            if ((res.status !== 503 && res.status !== 429) || attempt > 3)
              throw new Error(`batch ${res.status}`);
            retries++;
            await sleep(Math.min(5, Number(res.headers.get("retry-after") ?? 1) || 1) * 1000);
          }
        },
        () => ctx.progress("soak jobs", done + failed, jobs),
      );
      durationS = r.durationMs / 1000;
    } finally {
      clearInterval(timer);
    }
    if (done === 0) throw new Error("soak: no job completed");
    memEnd = await usedMemory(redis);
    keysEnd = await countPrefix(redis, prefix);
    // Past the retention time, plus a little for expiry to run.
    await sleep((RETENTION_S + 3) * 1000);
    // BullMQ trims finished jobs older than the retention when later jobs finish, at most 1000
    // per finished job: enough more to trim all that the load left.
    await closedLoop(4, Math.ceil(keysEnd / 1000) + 40, async (i) => {
      await fetch(`${BASE}/api/ml/echo`, {
        method: "POST",
        headers: { "content-type": "application/json", prefer: "wait=10" },
        body: JSON.stringify({ text: `soak tail ${tag} ${i}` }),
      }).then((res) => res.arrayBuffer());
    });
    memAfter = await usedMemory(redis);
    keysAfter = await countPrefix(redis, prefix);
  } finally {
    await stack.stop();
    await cleanupPrefix(ctx.redisUrl, prefix);
    redis.disconnect();
  }

  // Warm-up is the first fifth of the run; growth is last tenth vs the tenth right after warm-up.
  const rssGrowth = (key: "api_rss_mib" | "worker_rss_mib") => {
    const n = samples.length;
    const early = samples.slice(Math.floor(n * 0.2), Math.max(Math.floor(n * 0.2) + 1, Math.floor(n * 0.3)));
    const late = samples.slice(Math.floor(n * 0.9));
    return {
      after_warmup_mib: median(early.map((s) => s[key])),
      end_mib: median(late.map((s) => s[key])),
      max_mib: Math.max(...samples.map((s) => s[key])),
      growth_mib: median(late.map((s) => s[key])) - median(early.map((s) => s[key])),
    };
  };
  const apiRss = rssGrowth("api_rss_mib");
  const workerRss = rssGrowth("worker_rss_mib");
  const peakRedis = Math.max(...samples.map((s) => s.redis_used_mib));
  return {
    name: "soak",
    tables: [
      {
        title: `Soak: ${jobs} echo jobs in batch requests of ${PER_REQUEST}, ${inFlight} in flight, 1 API + 1 worker process, RESULT_RETENTION_SECONDS=${RETENTION_S}`,
        columns: ["measure", "value"],
        rows: [
          ["jobs completed", done],
          ["jobs not completed", failed],
          ["batch requests retried after 503/429 (Retry-After)", retries],
          ["duration s", durationS],
          ["jobs/s", done / durationS],
          [
            "API RSS after warm-up → end MiB (max)",
            `${apiRss.after_warmup_mib.toFixed(0)} → ${apiRss.end_mib.toFixed(0)} (${apiRss.max_mib.toFixed(0)})`,
          ],
          [
            "worker RSS after warm-up → end MiB (max)",
            `${workerRss.after_warmup_mib.toFixed(0)} → ${workerRss.end_mib.toFixed(0)} (${workerRss.max_mib.toFixed(0)})`,
          ],
          ["Redis used_memory before MiB", memBefore / MIB],
          ["Redis used_memory peak during MiB", peakRedis],
          ["Redis used_memory at end of load MiB", memEnd / MIB],
          [`Redis used_memory ${RETENTION_S + 3} s later MiB`, memAfter / MIB],
          ["keys under the run's prefix at end of load", keysEnd],
          [`keys under the run's prefix ${RETENTION_S + 3} s later`, keysAfter],
        ],
      },
    ],
    data: {
      jobs,
      per_request: PER_REQUEST,
      in_flight: inFlight,
      retention_s: RETENTION_S,
      completed: done,
      not_completed: failed,
      failed_requests: failures,
      retried_requests: retries,
      duration_s: durationS,
      throughput_per_s: done / durationS,
      api_rss: apiRss,
      worker_rss: workerRss,
      redis: {
        used_memory_before_mib: memBefore / MIB,
        used_memory_peak_mib: peakRedis,
        used_memory_end_mib: memEnd / MIB,
        used_memory_after_retention_mib: memAfter / MIB,
        keys_end: keysEnd,
        keys_after_retention: keysAfter,
        note: "used_memory is the whole Redis server's (shared with anything else using it)",
      },
      samples,
    },
  };
};
