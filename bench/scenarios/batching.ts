import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startApi } from "../../src/api/main.js";
import { buildConfig } from "../../src/config/index.js";
import { Mlp } from "../../src/training/mlp.js";
import { exportMlp } from "../../src/training/onnx-export.js";
import { percentile, type Scenario } from "../lib.js";
import { cleanupPrefix } from "../support/redis.js";
import { benchEnv } from "../support/processes.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const BATCH_SIZES = [1, 8, 32, 64] as const;

/**
 * Dynamic batching on a heavy model: the same model file served under one name per
 * maxBatchSize (1, 8, 32, 64) by the same worker process, loaded in turn with the same number
 * of requests in flight. Two models: `wide`, a stand-in for a large network (2048 → 4096 →
 * 4096 → 2, 25 M parameters, random weights written by the exporter: its cost, not its
 * answers, is what is measured), and the trained `spam-mlp`.
 */
export const run: Scenario = async (ctx) => {
  const requests = ctx.quick ? 100 : 2000;
  const inFlight = 128;
  const repo = await mkdtemp(path.join(tmpdir(), "inferline-bench-batching-"));
  const prefix = `bench-batching-${randomBytes(4).toString("hex")}`;
  const spamManifest = JSON.parse(
    await readFile(path.join(ROOT, "models", "spam-mlp", "1", "manifest.json"), "utf8"),
  ) as Record<string, unknown>;
  const wideFile = path.join(repo, "wide.onnx");
  await writeFile(wideFile, exportMlp(Mlp.init([2048, 4096, 4096, 2], "softmax-cross-entropy", 1)));

  const families = [
    { family: "wide", file: wideFile },
    { family: "spam-mlp", file: path.join(ROOT, "models", "spam-mlp", "1", "model.onnx") },
  ];
  const names: string[] = [];
  for (const { family, file } of families) {
    for (const b of BATCH_SIZES) {
      const name = `${family}-b${b}`;
      names.push(name);
      const dir = path.join(repo, name, "1");
      await mkdir(dir, { recursive: true });
      await copyFile(file, path.join(dir, "model.onnx"));
      const manifest = {
        ...spamManifest,
        name,
        description: `${family} with maxBatchSize ${b}`,
        batching: { maxBatchSize: b, maxDelayMs: 0 },
        cache: { ttlSeconds: 0 },
        training: undefined,
      };
      await writeFile(path.join(dir, "manifest.json"), JSON.stringify(manifest));
    }
  }

  // Measure batching, not the API's protections: no auth, no rate limits, no queue cap.
  const env = benchEnv(ctx.redisUrl, prefix, {
    PATH: process.env.PATH ?? "",
    NODE_ENV: "production",
    MODEL_REPOSITORY: repo,
    LOG_LEVEL: "info",
    WORKER_CONCURRENCY: "64",
  });
  const config = buildConfig({ ...env, LOG_LEVEL: "silent", HOST: "127.0.0.1", PORT: "0" });
  const api = await startApi(config);
  const worker = spawn(process.execPath, [path.join(ROOT, "dist", "cli", "index.js"), "worker"], {
    env,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const rows: (string | number)[][] = [];
  const data: Record<string, unknown>[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let buf = "";
      worker.stdout.setEncoding("utf8").on("data", (c: string) => {
        buf += c;
        if (buf.includes('"event":"worker_started"')) resolve();
      });
      worker.once("exit", (code) => reject(new Error(`worker exited (${code}) before starting`)));
    });
    for (const name of names) {
      const r = await load(api.url, name, requests, inFlight, (done) => ctx.progress(name, done, requests));
      if (r.errors === requests) throw new Error(`${name}: every request failed`);
      data.push({ model: name, requests, in_flight: inFlight, ...r });
    }
    for (const { family } of families) {
      const base = data.find((d) => d.model === `${family}-b1`)!;
      for (const d of data.filter((x) => String(x.model).startsWith(`${family}-b`))) {
        rows.push([
          String(d.model),
          Number(d.throughput_rps).toFixed(0),
          (Number(d.throughput_rps) / Number(base.throughput_rps)).toFixed(1) + "×",
          Number(d.p50_ms).toFixed(0),
          Number(d.p99_ms).toFixed(0),
          Number(d.mean_batch).toFixed(1),
          Number(d.errors),
        ]);
      }
    }
  } finally {
    worker.kill("SIGTERM");
    await new Promise((r) => worker.once("exit", r));
    await api.close();
    await cleanupPrefix(ctx.redisUrl, prefix);
    await rm(repo, { recursive: true, force: true });
  }
  return {
    name: "batching",
    tables: [
      {
        title: `Dynamic batching: ${requests} requests per row, ${inFlight} in flight, 1 worker process (concurrency 64)`,
        columns: ["model (maxBatchSize)", "req/s", "vs batch 1", "p50 ms", "p99 ms", "mean batch", "errors"],
        rows,
      },
    ],
    data: { requests, in_flight: inFlight, results: data },
  };
};

/** Closed loop: `inFlight` clients, each POSTs a distinct text and waits for its result. */
async function load(
  base: string,
  model: string,
  total: number,
  inFlight: number,
  progress: (n: number) => void,
) {
  let next = 0;
  let done = 0;
  let errors = 0;
  const latencies: number[] = [];
  const batches: number[] = [];
  const t0 = performance.now();
  const client = async () => {
    while (next < total) {
      const i = next++;
      const start = performance.now();
      const body = await once(
        base,
        model,
        `message ${i} ${model}: meeting notes, invoice, free offer ${i % 97}`,
      );
      latencies.push(performance.now() - start);
      if (body?.status === "completed" && typeof body.batch_size === "number") batches.push(body.batch_size);
      else errors++;
      progress(++done);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, client));
  const seconds = (performance.now() - t0) / 1000;
  return {
    throughput_rps: total / seconds,
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    mean_batch: batches.reduce((a, b) => a + b, 0) / Math.max(1, batches.length),
    errors,
  };
}

async function once(base: string, model: string, text: string): Promise<Record<string, unknown> | undefined> {
  const post = await fetch(`${base}/api/ml/${model}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ text }),
  });
  const accepted = (await post.json()) as Record<string, unknown>;
  if (post.status === 200) return accepted;
  if (post.status !== 202) return undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const res = await fetch(`${base}/api/results/${String(accepted.job_id)}`, {
      headers: { prefer: "wait=60" },
    });
    const body = (await res.json()) as Record<string, unknown>;
    if (res.status !== 500) return body;
  }
  return undefined;
}
