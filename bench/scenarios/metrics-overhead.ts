import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { closedLoop, summarize, type Scenario } from "../lib.js";
import { startCli, stopChild } from "../support/processes.js";

async function cleanup(url: string, prefix: string): Promise<void> {
  const r = new Redis(url);
  let cursor = "0";
  do {
    const [next, keys] = await r.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length) await r.unlink(...keys);
  } while (cursor !== "0");
  r.disconnect();
}

/**
 * What metrics and cluster-wide stats cost: the overhead scenario's Inferline end to end (HTTP
 * POST /api/ml/echo with `Prefer: wait`, one API and one worker process) with METRICS_ENABLED on
 * and off, in the same run, alternating so drift of the machine hits both alike. Goal: ≤ 5%
 * less throughput with them on.
 */
export const run: Scenario = async (ctx) => {
  const total = ctx.quick ? 600 : 6000;
  const warm = ctx.quick ? 100 : 500;
  const rounds = ctx.quick ? 1 : 3;
  const concurrency = 16;
  const url = ctx.redisUrl;
  const runs: Record<"on" | "off", ReturnType<typeof summarize>[]> = { on: [], off: [] };

  for (let round = 0; round < rounds; round++) {
    for (const mode of round % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const)) {
      const prefix = `bench-metrics-${mode}-${randomBytes(3).toString("hex")}`;
      const env = {
        REDIS_URL: url,
        REDIS_KEY_PREFIX: prefix,
        PORT: "3918",
        HOST: "127.0.0.1",
        MODELS: "echo",
        METRICS_ENABLED: mode === "on" ? "true" : "false",
        WORKER_METRICS_PORT: "0",
        AUTH_DISABLED: "true",
        RATE_LIMIT_KEY_RPS: "0",
        RATE_LIMIT_IP_RPS: "0",
      };
      const api = await startCli(["api"], env, "api_started");
      const worker = await startCli(
        ["worker", "--concurrency", String(concurrency)],
        env,
        "worker_started",
      ).catch(async (e) => {
        await stopChild(api);
        throw e;
      });
      // Distinct inputs: a result cache or coalescing must not turn the run into cache hits.
      let n = 0;
      const tag = randomBytes(4).toString("hex");
      const one = async () => {
        const res = await fetch("http://127.0.0.1:3918/api/ml/echo", {
          method: "POST",
          headers: { "content-type": "application/json", prefer: "wait=10" },
          body: JSON.stringify({ text: `hello ${tag} ${n++}` }),
        });
        const json = (await res.json()) as { status: string };
        if (res.status !== 200 || json.status !== "completed") throw new Error(`status ${res.status}`);
      };
      await closedLoop(concurrency, warm, one);
      const label = `metrics ${mode} (round ${round + 1}/${rounds})`;
      const r = await closedLoop(concurrency, total, one, (d) => ctx.progress(label, d, total));
      runs[mode].push(summarize(r));
      await stopChild(worker);
      await stopChild(api);
      await cleanup(url, prefix);
    }
  }

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const agg = (mode: "on" | "off") => ({
    throughput_per_s: median(runs[mode].map((s) => s.throughput_per_s)),
    p50_ms: median(runs[mode].map((s) => s.p50_ms)),
    p99_ms: median(runs[mode].map((s) => s.p99_ms)),
    errors: runs[mode].reduce((e, s) => e + s.errors, 0),
  });
  const off = agg("off");
  const on = agg("on");
  const overhead = 1 - on.throughput_per_s / off.throughput_per_s;
  return {
    name: "metrics-overhead",
    tables: [
      {
        title: `Inferline e2e (echo), ${concurrency} in flight, ${total} requests × ${rounds} round(s) each; medians`,
        columns: ["metrics + stats", "jobs/s", "p50 ms", "p99 ms", "errors", "throughput vs off"],
        rows: [
          ["off", off.throughput_per_s, off.p50_ms, off.p99_ms, off.errors, "100%"],
          [
            "on",
            on.throughput_per_s,
            on.p50_ms,
            on.p99_ms,
            on.errors,
            `${((on.throughput_per_s / off.throughput_per_s) * 100).toFixed(1)}%`,
          ],
        ],
      },
    ],
    data: {
      concurrency,
      requests: total,
      rounds,
      runs,
      off,
      on,
      throughput_overhead: overhead,
      goal_max_overhead: 0.05,
    },
  };
};
