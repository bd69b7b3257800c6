import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpus } from "node:os";
import { closedLoop, latencySummary, type Scenario } from "../lib.js";
import { heavyModelRepo, parameterCount, QUICK_LAYERS, WIDE_LAYERS } from "../support/heavy-model.js";
import { predictAndWait } from "../support/http.js";
import { startApiProcess, startCli, stopChild, benchEnv } from "../support/processes.js";
import { cpuMeter } from "../support/procstat.js";
import { cleanupPrefix } from "../support/redis.js";

const MODEL = "heavy";

/**
 * Worker processes on a heavy model: 1, 2 and 4 worker processes (one ONNX Runtime thread
 * each, so a process is at most one core of inference), plus 1 process with ONNX Runtime's
 * default threads (all cores) for reference. One API process, the same closed-loop load for
 * each row. CPU per process comes from /proc/<pid>/stat over the measured interval (100% = one
 * core); on a 2-core machine the sum cannot pass 200%, and where it gets there is where more
 * processes stop helping.
 */
export const run: Scenario = async (ctx) => {
  const layers = ctx.quick ? QUICK_LAYERS : WIDE_LAYERS;
  const total = ctx.quick ? 80 : 1500;
  const inFlight = 128;
  const maxBatchSize = 32;
  const { repo, dispose } = await heavyModelRepo({ name: MODEL, layers, maxBatchSize });
  const rows: Record<string, unknown>[] = [];
  const setups = [
    { workers: 1, ortThreads: 1 },
    { workers: 2, ortThreads: 1 },
    { workers: 4, ortThreads: 1 },
    { workers: 1, ortThreads: 0 },
  ];
  try {
    for (const { workers, ortThreads } of setups) {
      const prefix = `bench-scaling-${randomBytes(3).toString("hex")}`;
      const env = benchEnv(ctx.redisUrl, prefix, {
        MODEL_REPOSITORY: repo,
        MODELS: MODEL,
        WORKER_CONCURRENCY: "64",
        ORT_INTRA_OP_THREADS: String(ortThreads),
        ORT_INTER_OP_THREADS: String(ortThreads),
      });
      const label = `${workers} worker${workers > 1 ? "s" : ""}${ortThreads === 0 ? ", ORT threads = cores" : ""}`;
      const { proc: api, url: BASE } = await startApiProcess(env);
      const procs: ChildProcess[] = [];
      try {
        const started = await Promise.allSettled(
          Array.from({ length: workers }, () => startCli(["worker"], env, "worker_started")),
        );
        for (const s of started) if (s.status === "fulfilled") procs.push(s.value);
        if (procs.length !== workers) throw new Error("a worker did not start");
        const tag = randomBytes(4).toString("hex");
        const one = async (i: number) => {
          const body = await predictAndWait(BASE, MODEL, {
            text: `message ${i} ${tag}: meeting notes, invoice, free offer ${i % 97}`,
          });
          batches.push(Number(body.batch_size ?? NaN));
        };
        let batches: number[] = [];
        await closedLoop(inFlight, Math.round(total / 5), (i) => one(total + i));
        batches = [];
        const pids: Record<string, number> = { api: api.pid!, bench_client: process.pid };
        procs.forEach((p, i) => (pids[`worker_${i + 1}`] = p.pid!));
        const meter = cpuMeter(pids);
        const r = await closedLoop(inFlight, total, one, (d) => ctx.progress(label, d, total));
        const cpu = meter.stop();
        if (r.latenciesMs.length === 0) throw new Error(`${label}: every request failed`);
        const workerCpu = Object.entries(cpu)
          .filter(([k]) => k.startsWith("worker_"))
          .map(([, v]) => v);
        rows.push({
          setup: label,
          workers,
          ort_threads: ortThreads === 0 ? "default" : ortThreads,
          requests: r.latenciesMs.length,
          errors: r.errors,
          throughput_per_s: (r.latenciesMs.length / r.durationMs) * 1000,
          ...latencySummary(r.latenciesMs),
          mean_batch: batches.reduce((a, b) => a + b, 0) / Math.max(1, batches.length),
          cpu_percent: cpu,
          cpu_workers_total_percent: workerCpu.reduce((a, b) => a + b, 0),
          cpu_all_total_percent: Object.values(cpu).reduce((a, b) => a + b, 0),
        });
      } finally {
        for (const p of procs) await stopChild(p);
        await stopChild(api);
        await cleanupPrefix(ctx.redisUrl, prefix);
      }
    }
  } finally {
    await dispose();
  }
  const base = rows[0]!;
  const cores = cpus().length;
  return {
    name: "scaling",
    tables: [
      {
        title: `Worker processes on a ${(parameterCount(layers) / 1e6).toFixed(1)} M-parameter model (maxBatchSize ${maxBatchSize}): ${total} requests per row, ${inFlight} in flight, 1 API process, ${cores} cores`,
        columns: [
          "workers",
          "req/s",
          "vs 1 worker",
          "p50 ms",
          "p99 ms",
          "mean batch",
          "CPU % workers (each)",
          "CPU % API",
          "CPU % client",
          "CPU % total",
          "errors",
        ],
        rows: rows.map((r) => {
          const cpu = r.cpu_percent as Record<string, number>;
          return [
            String(r.setup),
            Number(r.throughput_per_s),
            `${(Number(r.throughput_per_s) / Number(base.throughput_per_s)).toFixed(2)}×`,
            Number(r.p50_ms),
            Number(r.p99_ms),
            Number(r.mean_batch),
            Object.entries(cpu)
              .filter(([k]) => k.startsWith("worker_"))
              .map(([, v]) => v.toFixed(0))
              .join(" + "),
            Number(cpu.api),
            Number(cpu.bench_client),
            Number(r.cpu_all_total_percent),
            Number(r.errors),
          ];
        }),
      },
    ],
    data: {
      layers,
      parameters: parameterCount(layers),
      max_batch_size: maxBatchSize,
      in_flight: inFlight,
      requests: total,
      cores,
      results: rows,
    },
  };
};
