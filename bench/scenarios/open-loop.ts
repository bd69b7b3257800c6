import { randomBytes } from "node:crypto";
import { closedLoop, latencySummary, openLoop, type Scenario } from "../lib.js";
import { heavyModelRepo, parameterCount, QUICK_LAYERS, WIDE_LAYERS } from "../support/heavy-model.js";
import { predictAndWait, sleep } from "../support/http.js";
import { benchEnv, startStack } from "../support/processes.js";
import { cleanupPrefix } from "../support/redis.js";

const MODEL = "heavy";
const LOADS = [0.25, 0.5, 0.75, 1, 1.5] as const;

/**
 * Latency under load, honestly: the capacity of one API + one worker process on the heavy
 * model is measured first (closed loop, 128 in flight), then requests arrive at fixed rates of
 * 25, 50, 75, 100 and 150% of it, each for a fixed time. Every request waits for its result
 * (`Prefer: wait`), and its latency counts from the moment it was scheduled to be sent, so a
 * backlog shows in the numbers (no coordinated omission). Past capacity the queue grows for as
 * long as the overload lasts, and latency with it.
 */
export const run: Scenario = async (ctx) => {
  const layers = ctx.quick ? QUICK_LAYERS : WIDE_LAYERS;
  const seconds = ctx.quick ? 1.5 : 10;
  const capacityRequests = ctx.quick ? 150 : 1500;
  const maxBatchSize = 32;
  const prefix = `bench-openloop-${randomBytes(3).toString("hex")}`;
  const { repo, dispose } = await heavyModelRepo({ name: MODEL, layers, maxBatchSize });
  const env = benchEnv(ctx.redisUrl, prefix, {
    MODEL_REPOSITORY: repo,
    MODELS: MODEL,
    WORKER_CONCURRENCY: "64",
  });
  const levels: Record<string, unknown>[] = [];
  let capacity: number;
  const stack = await startStack(env);
  const BASE = stack.url;
  try {
    const tag = randomBytes(4).toString("hex");
    let n = 0;
    const one = async () => {
      const i = n++;
      await predictAndWait(BASE, MODEL, { text: `message ${i} ${tag}: invoice, free offer ${i % 97}` }, 60);
    };
    await closedLoop(128, Math.round(capacityRequests / 5), one);
    const cap = await closedLoop(128, capacityRequests, one, (d) =>
      ctx.progress("capacity (closed loop)", d, capacityRequests),
    );
    if (cap.latenciesMs.length === 0) throw new Error("capacity run: every request failed");
    capacity = (cap.latenciesMs.length / cap.durationMs) * 1000;
    for (const load of LOADS) {
      const rate = Math.max(1, Math.round(capacity * load));
      const label = `${Math.round(load * 100)}% = ${rate} req/s`;
      const r = await openLoop(rate, seconds, one, {
        maxInFlight: 20_000,
        onProgress: (d, t) => ctx.progress(label, d, t),
      });
      levels.push({
        load,
        rate_per_s: rate,
        seconds,
        scheduled: r.scheduled,
        completed: r.latenciesMs.length,
        errors: r.errors,
        dropped: r.dropped,
        achieved_per_s: (r.latenciesMs.length / r.durationMs) * 1000,
        max_send_lag_ms: r.maxSendLagMs,
        ...latencySummary(r.latenciesMs),
      });
      await sleep(ctx.quick ? 300 : 1000);
    }
  } finally {
    await stack.stop();
    await cleanupPrefix(ctx.redisUrl, prefix);
    await dispose();
  }
  return {
    name: "open-loop",
    tables: [
      {
        title: `Fixed arrival rates on a ${(parameterCount(layers) / 1e6).toFixed(1)} M-parameter model (maxBatchSize ${maxBatchSize}), ${seconds} s each, 1 API + 1 worker process; capacity measured first: ${capacity.toFixed(0)} req/s`,
        columns: [
          "load",
          "rate req/s",
          "completed/s",
          "p50 ms",
          "p90 ms",
          "p99 ms",
          "p99.9 ms",
          "max ms",
          "errors",
        ],
        rows: levels.map((l) => [
          `${Math.round(Number(l.load) * 100)}%`,
          Number(l.rate_per_s),
          Number(l.achieved_per_s),
          Number(l.p50_ms),
          Number(l.p90_ms),
          Number(l.p99_ms),
          Number(l.p999_ms),
          Number(l.max_ms),
          Number(l.errors),
        ]),
      },
    ],
    data: {
      layers,
      parameters: parameterCount(layers),
      max_batch_size: maxBatchSize,
      capacity_per_s: capacity,
      capacity_in_flight: 128,
      seconds_per_level: seconds,
      levels,
    },
  };
};
