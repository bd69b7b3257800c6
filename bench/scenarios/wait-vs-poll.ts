import { randomBytes } from "node:crypto";
import { closedLoop, latencySummary, type Scenario } from "../lib.js";
import { request, sleep } from "../support/http.js";
import { benchEnv, startStack } from "../support/processes.js";
import { cleanupPrefix } from "../support/redis.js";

const POLL_INTERVALS_MS = [50, 200] as const;
/** Simulated inference time per batch (the echo model sleeps this long). */
const SLEEP_MS = 10;

/**
 * How a client should get its result: the same jobs (echo, 10 ms of simulated inference per
 * batch), the same number in flight, one API and one worker process, measured in turn:
 *  - `Prefer: wait=30` on the POST: one request, answered when the job finishes;
 *  - POST (202), then GET /api/results/{id} every N ms until it is 200, for N = 50 and 200.
 * Latency is from the POST to the moment the client holds the result.
 */
export const run: Scenario = async (ctx) => {
  const total = ctx.quick ? 300 : 2000;
  const concurrency = 16;
  const prefix = `bench-waitpoll-${randomBytes(3).toString("hex")}`;
  const env = benchEnv(ctx.redisUrl, prefix, {
    MODELS: "echo",
  });
  const stack = await startStack(env, ["--concurrency", "64"]);
  const BASE = stack.url;
  const results: Record<string, unknown>[] = [];
  try {
    const tag = randomBytes(4).toString("hex");
    const modes = [
      { mode: "Prefer: wait=30", interval: 0 },
      ...POLL_INTERVALS_MS.map((interval) => ({ mode: `poll every ${interval} ms`, interval })),
    ];
    for (const { mode, interval } of modes) {
      let requests = 0;
      const one = async (i: number) => {
        const input = { text: `${mode} ${tag} ${i}`, sleep_ms: SLEEP_MS };
        requests++;
        const post = await request(
          BASE,
          "POST",
          "/api/ml/echo",
          input,
          interval === 0 ? { prefer: "wait=30" } : {},
        );
        const body = post.body;
        if (post.status === 200 && body.status === "completed") return;
        if (post.status !== 202 || interval === 0) throw new Error(`POST ${post.status}`);
        // Bounded: give up after 30 s of polling.
        for (let t = 0; t < 30_000; t += interval) {
          await sleep(interval);
          requests++;
          const res = await request(BASE, "GET", `/api/results/${String(body.job_id)}`);
          const view = res.body;
          if (res.status === 200) {
            if (view.status !== "completed") throw new Error(`job ${String(view.status)}`);
            return;
          }
          if (res.status !== 202) throw new Error(`GET ${res.status}`);
        }
        throw new Error("poll timeout");
      };
      const warm = Math.round(total / 10);
      await closedLoop(concurrency, warm, (i) => one(total + i));
      requests = 0;
      const r = await closedLoop(concurrency, total, one, (d) => ctx.progress(mode, d, total));
      if (r.latenciesMs.length === 0) throw new Error(`${mode}: every request failed`);
      results.push({
        mode,
        poll_interval_ms: interval || null,
        jobs: r.latenciesMs.length,
        errors: r.errors,
        throughput_per_s: (r.latenciesMs.length / r.durationMs) * 1000,
        http_requests_per_job: requests / total,
        ...latencySummary(r.latenciesMs),
      });
    }
  } finally {
    await stack.stop();
    await cleanupPrefix(ctx.redisUrl, prefix);
  }
  const wait = results[0]!;
  return {
    name: "wait-vs-poll",
    tables: [
      {
        title: `Getting the result: echo with ${SLEEP_MS} ms simulated inference, ${concurrency} in flight, ${total} jobs each, 1 API + 1 worker process`,
        columns: [
          "how",
          "jobs/s",
          "p50 ms",
          "p90 ms",
          "p99 ms",
          "HTTP requests per job",
          "errors",
          "p50 vs wait",
        ],
        rows: results.map((r) => [
          String(r.mode),
          Number(r.throughput_per_s),
          Number(r.p50_ms),
          Number(r.p90_ms),
          Number(r.p99_ms),
          Number(r.http_requests_per_job),
          Number(r.errors),
          `${(Number(r.p50_ms) / Number(wait.p50_ms)).toFixed(1)}×`,
        ]),
      },
    ],
    data: { concurrency, jobs: total, sleep_ms: SLEEP_MS, results },
  };
};
