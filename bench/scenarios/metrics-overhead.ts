import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import type { ModelDescriptor } from "../../src/models/types.js";
import { Metrics } from "../../src/telemetry/metrics.js";
import { StatsRecorder } from "../../src/telemetry/stats.js";
import { ApiTelemetry, WorkerTelemetry } from "../../src/telemetry/telemetry.js";
import { closedLoop, summarize, type Scenario } from "../lib.js";
import { interleaved, type Arm, type ArmResult } from "../support/interleave.js";
import { predictAndWait } from "../support/http.js";
import { benchEnv, startStack, type Stack } from "../support/processes.js";
import { cleanupPrefix } from "../support/redis.js";

/**
 * The recording itself, in process: what the API adds per request (request counters and
 * histogram, job queued) and a worker per job (counters, three latency histograms, batch size,
 * the stats buckets), in µs. Nothing is flushed: the flush is one pipeline per process every
 * STATS_FLUSH_INTERVAL_MS, whatever the traffic.
 */
function recordingCost(iterations: number): { api_us_per_request: number; worker_us_per_job: number } {
  const redis = new Redis({ lazyConnect: true });
  const opts = { flushIntervalMs: 1e9, retentionSeconds: 3600, recentJobs: 100 };
  const api = new ApiTelemetry(new Metrics("api"), new StatsRecorder(redis, "bench", opts));
  const worker = new WorkerTelemetry(new Metrics("worker"), new StatsRecorder(redis, "bench", opts));
  const d = {
    name: "sentiment",
    version: "1",
    task: "sentiment",
    labels: ["negative", "neutral", "positive"],
  };
  const descriptor = d as unknown as ModelDescriptor;
  const time = (fn: (i: number) => void) => {
    for (let i = 0; i < iterations / 10; i++) fn(i); // warm up
    const t0 = performance.now();
    for (let i = 0; i < iterations; i++) fn(i);
    return ((performance.now() - t0) / iterations) * 1000;
  };
  const result = {
    api_us_per_request: time((i) => {
      api.requestFinished("/api/ml/:model", "POST", 200, 0.01 + (i % 100) / 1000);
      api.jobQueued("sentiment", "1");
    }),
    worker_us_per_job: time((i) => {
      worker.jobCompleted(
        descriptor,
        { waitMs: 3 + (i % 50), inferenceMs: 0.2, totalMs: 5 + (i % 70) },
        {
          label: d.labels[i % 3],
        },
      );
      worker.batch(descriptor, 1 + (i % 8));
    }),
  };
  redis.disconnect();
  return result;
}

/**
 * What metrics and cluster-wide stats cost: the overhead scenario's Inferline end to end (HTTP
 * POST /api/ml/echo with `Prefer: wait`, one API and one worker process) with METRICS_ENABLED on
 * and off, both running at once and measured in turns of 1000 requests (see interleaved) so
 * drift of the machine hits both alike. Goal: ≤ 5% less throughput with them on. Also the CPU
 * time the API and worker processes spent per request, which other load on the machine
 * disturbs less than throughput.
 */
export const run: Scenario = async (ctx) => {
  const chunks = ctx.quick ? 2 : 12;
  const chunkSize = ctx.quick ? 300 : 1000;
  const total = chunks * chunkSize;
  const warm = ctx.quick ? 100 : 500;
  const concurrency = 16;
  const url = ctx.redisUrl;
  const modes = ["off", "on"] as const;
  const stacks: { prefix: string; stack: Stack }[] = [];
  let measured: Record<string, ArmResult>;
  try {
    const arms: Arm[] = [];
    for (const mode of modes) {
      const prefix = `bench-metrics-${mode}-${randomBytes(3).toString("hex")}`;
      const stack = await startStack(
        benchEnv(url, prefix, {
          MODELS: "echo",
          METRICS_ENABLED: mode === "on" ? "true" : "false",
          WORKER_METRICS_PORT: "0",
        }),
        ["--concurrency", String(concurrency)],
      );
      stacks.push({ prefix, stack });
      // Distinct inputs: a result cache or coalescing must not turn the run into cache hits.
      const tag = randomBytes(4).toString("hex");
      arms.push({
        name: mode,
        pids: { api: stack.api.pid, worker: stack.worker.pid },
        one: (i) => predictAndWait(stack.url, "echo", { text: `hello ${tag} ${i}` }, 10).then(() => {}),
      });
    }
    for (const arm of arms) await closedLoop(concurrency, warm, (i) => arm.one(10 * total + i));
    measured = await interleaved(arms, {
      chunks,
      chunkSize,
      concurrency,
      onProgress: (name, d, n) => ctx.progress(`metrics ${name}`, d, n),
    });
  } finally {
    for (const { prefix, stack } of stacks) {
      await stack.stop();
      await cleanupPrefix(url, prefix);
    }
  }

  const agg = (mode: "on" | "off") => {
    const m = measured[mode]!;
    return { ...summarize(m.result), cpu_ms_per_request: (m.cpu.api ?? 0) + (m.cpu.worker ?? 0) };
  };
  const off = agg("off");
  const on = agg("on");
  const micro = recordingCost(ctx.quick ? 50_000 : 200_000);
  const overhead = 1 - on.throughput_per_s / off.throughput_per_s;
  return {
    name: "metrics-overhead",
    tables: [
      {
        title: `Inferline e2e (echo), ${concurrency} in flight, ${total} requests each in turns of ${chunkSize}`,
        columns: [
          "metrics + stats",
          "jobs/s",
          "p50 ms",
          "p99 ms",
          "errors",
          "throughput vs off",
          "CPU ms / request (API + worker)",
        ],
        rows: modes.map((mode) => {
          const a = mode === "on" ? on : off;
          return [
            mode,
            a.throughput_per_s,
            a.p50_ms,
            a.p99_ms,
            a.errors,
            `${((a.throughput_per_s / off.throughput_per_s) * 100).toFixed(1)}%`,
            a.cpu_ms_per_request,
          ];
        }),
      },
      {
        title: "Recording cost on the hot path (in process, no I/O)",
        columns: ["where", "µs", "share of the CPU a request costs with metrics off"],
        rows: [
          [
            "API, per request",
            micro.api_us_per_request,
            `${((micro.api_us_per_request / 1000 / off.cpu_ms_per_request) * 100).toFixed(2)}%`,
          ],
          [
            "worker, per job",
            micro.worker_us_per_job,
            `${((micro.worker_us_per_job / 1000 / off.cpu_ms_per_request) * 100).toFixed(2)}%`,
          ],
        ],
      },
    ],
    data: {
      recording_cost: micro,
      concurrency,
      requests: total,
      chunk_size: chunkSize,
      off,
      on,
      throughput_overhead: overhead,
      goal_max_overhead: 0.05,
    },
  };
};
