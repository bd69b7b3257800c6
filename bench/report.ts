// `npm run bench:report`: turns bench/results/*.json (written by `npm run bench`) into
// docs/benchmarks.md, the charts under docs/img/bench-*.svg, and README's Performance section.
// Every number it prints comes from those files; a scenario with only a --quick result is shown
// and marked as such, one with none is listed as not run.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { TopLevelSpec } from "vega-lite";
import { formatTable, type BenchTable } from "./lib.js";
import { BASE_CONFIG, renderSvg } from "./support/charts.js";
import { SYSTEMS } from "./support/systems.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const RESULTS = path.join(ROOT, "bench", "results");
const DOC = path.join(ROOT, "docs", "benchmarks.md");
const README = path.join(ROOT, "README.md");

interface Machine {
  cpus: number;
  cpu_model: string;
  memory_gib: number;
  node: string;
  platform: string;
  redis?: string;
}
interface Result {
  scenario: string;
  quick: boolean;
  date: string;
  duration_s: number;
  commit: string;
  machine: Machine;
  load_average_1m?: { start: number; end: number };
  command: string;
  invoked_as?: string;
  tables: BenchTable[];
  data: unknown;
}

const ORDER = [
  "overhead",
  "contract",
  "wait-vs-poll",
  "batching",
  "scaling",
  "open-loop",
  "soak",
  "metrics-overhead",
] as const;
type Name = (typeof ORDER)[number];

function load(name: Name): Result | undefined {
  for (const file of [`${name}.json`, `${name}.quick.json`]) {
    const p = path.join(RESULTS, file);
    if (existsSync(p)) return JSON.parse(readFileSync(p, "utf8")) as Result;
  }
  return undefined;
}

const results = new Map<Name, Result>();
for (const name of ORDER) {
  const r = load(name);
  if (r) results.set(name, r);
}

const f0 = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : "n/a");
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "n/a");
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "n/a");

// ---------------------------------------------------------------- charts (one per scenario)

interface BatchingData {
  results: { model: string; throughput_rps: number; p99_ms: number; mean_batch: number }[];
}
interface ScalingRow {
  setup: string;
  workers: number;
  ort_threads: number | string;
  throughput_per_s: number;
  p50_ms: number;
  p99_ms: number;
  cpu_percent: Record<string, number>;
  cpu_all_total_percent: number;
}
interface ScalingData {
  cores: number;
  parameters: number;
  results: ScalingRow[];
}
interface OpenLoopLevel {
  load: number;
  rate_per_s: number;
  achieved_per_s: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  errors: number;
}
interface OpenLoopData {
  capacity_per_s: number;
  levels: OpenLoopLevel[];
}
interface RssSummary {
  after_warmup_mib: number;
  end_mib: number;
  max_mib: number;
  growth_mib: number;
}
interface SoakData {
  jobs: number;
  completed: number;
  not_completed: number;
  retried_requests?: number;
  duration_s: number;
  throughput_per_s: number;
  retention_s: number;
  api_rss: RssSummary;
  worker_rss: RssSummary;
  redis: {
    used_memory_before_mib: number;
    used_memory_peak_mib: number;
    used_memory_end_mib: number;
    used_memory_after_retention_mib: number;
    keys_end: number;
    keys_after_retention: number;
  };
  samples: { t_s: number; api_rss_mib: number; worker_rss_mib: number; redis_used_mib: number }[];
}
interface WaitPollData {
  results: { mode: string; p50_ms: number; p90_ms: number; p99_ms: number; http_requests_per_job: number }[];
}
interface Summary {
  throughput_per_s: number;
  p50_ms: number;
  p99_ms: number;
}
interface OverheadData {
  results: Record<string, Summary>;
  unloaded?: Record<string, Summary>;
}
interface ContractData {
  cache_hits: {
    server_p50_ms: number;
    server_p99_ms: number;
    client_p99_ms: number;
    target_rate_per_s: number;
  };
  enqueue: { ratio: number; batch_size: number };
}
interface MetricsData {
  throughput_overhead: number;
  goal_max_overhead?: number;
  recording_cost?: { api_us_per_request: number; worker_us_per_job: number };
  off?: { cpu_ms_per_request: number };
}

const data = <T>(name: Name) => results.get(name)?.data as T | undefined;

function chartSpecs(): Record<string, TopLevelSpec> {
  const specs: Record<string, TopLevelSpec> = {};
  const overhead = data<OverheadData>("overhead");
  if (overhead) {
    specs["bench-overhead"] = {
      ...BASE_CONFIG,
      title: {
        text: "Same trivial job, same concurrency, one worker process",
        subtitle: "jobs per second (higher is better)",
      },
      width: 480,
      height: 120,
      data: {
        values: Object.entries(overhead.results).map(([system, s]) => ({ system, jobs: s.throughput_per_s })),
      },
      mark: { type: "bar", color: "#4c78a8" },
      encoding: {
        y: { field: "system", type: "nominal", sort: null, title: null },
        x: { field: "jobs", type: "quantitative", title: "jobs/s" },
      },
    };
  }
  const waitPoll = data<WaitPollData>("wait-vs-poll");
  if (waitPoll) {
    specs["bench-wait-vs-poll"] = {
      ...BASE_CONFIG,
      title: {
        text: "Getting the result: Prefer: wait vs polling",
        subtitle: "latency from POST to result in hand",
      },
      width: 480,
      height: 160,
      data: {
        values: waitPoll.results.flatMap((r) =>
          (["p50", "p90", "p99"] as const).map((p) => ({ mode: r.mode, percentile: p, ms: r[`${p}_ms`] })),
        ),
      },
      mark: "bar",
      encoding: {
        y: { field: "mode", type: "nominal", sort: null, title: null },
        yOffset: { field: "percentile", sort: ["p50", "p90", "p99"] },
        x: { field: "ms", type: "quantitative", title: "ms" },
        color: { field: "percentile", type: "nominal", sort: ["p50", "p90", "p99"] },
      },
    };
  }
  const batching = data<BatchingData>("batching");
  if (batching) {
    const values = batching.results.map((r) => {
      const m = /^(.*)-b(\d+)$/.exec(r.model);
      return { model: m?.[1] ?? r.model, max_batch: Number(m?.[2]), rps: r.throughput_rps, p99: r.p99_ms };
    });
    const panel = (field: string, title: string) => ({
      width: 260,
      height: 200,
      mark: { type: "line" as const, point: true },
      encoding: {
        x: { field: "max_batch", type: "ordinal" as const, title: "maxBatchSize" },
        y: { field, type: "quantitative" as const, title },
        color: { field: "model", type: "nominal" as const, title: "model" },
      },
    });
    specs["bench-batching"] = {
      ...BASE_CONFIG,
      title: {
        text: "Dynamic batching on a heavy model",
        subtitle: "one worker process, same load per point",
      },
      data: { values },
      hconcat: [panel("rps", "requests/s"), panel("p99", "p99 latency (ms)")],
    };
  }
  const scaling = data<ScalingData>("scaling");
  if (scaling) {
    const single = scaling.results.filter((r) => r.ort_threads === 1);
    specs["bench-scaling"] = {
      ...BASE_CONFIG,
      title: {
        text: "Throughput vs worker processes",
        subtitle: `${f1(scaling.parameters / 1e6)} M-parameter model, ${scaling.cores} cores, one ONNX Runtime thread per process`,
      },
      hconcat: [
        {
          width: 240,
          height: 200,
          data: {
            values: single.map((r) => ({ workers: r.workers, rps: r.throughput_per_s, p99: r.p99_ms })),
          },
          mark: { type: "line", point: true },
          encoding: {
            x: { field: "workers", type: "ordinal", title: "worker processes" },
            y: { field: "rps", type: "quantitative", title: "requests/s" },
          },
        },
        {
          width: 300,
          height: 200,
          layer: [
            {
              data: {
                values: scaling.results.flatMap((r) =>
                  Object.entries(r.cpu_percent).map(([proc, pct]) => ({
                    setup: r.setup,
                    process: proc.startsWith("worker_") ? "workers" : proc.replace("_", " "),
                    pct,
                  })),
                ),
              },
              mark: "bar",
              encoding: {
                x: {
                  field: "setup",
                  type: "nominal",
                  sort: null,
                  title: null,
                  axis: { labelAngle: -20, labelLimit: 220 },
                },
                y: { aggregate: "sum", field: "pct", type: "quantitative", title: "CPU % (100 = one core)" },
                color: { field: "process", type: "nominal", title: "process" },
              },
            },
            {
              data: { values: [{ cap: scaling.cores * 100 }] },
              mark: { type: "rule", color: "#d62728", strokeDash: [4, 3] },
              encoding: { y: { field: "cap", type: "quantitative" } },
            },
          ],
        },
      ],
    };
  }
  const open = data<OpenLoopData>("open-loop");
  if (open) {
    specs["bench-open-loop"] = {
      ...BASE_CONFIG,
      title: {
        text: "Latency vs offered load (open loop, from scheduled send time)",
        subtitle: `load as % of the capacity measured in the same run (${f0(open.capacity_per_s)} req/s)`,
      },
      width: 480,
      height: 240,
      data: {
        values: open.levels.flatMap((l) =>
          (["p50", "p90", "p99", "p999"] as const).map((p) => ({
            load: Math.round(l.load * 100),
            percentile: p === "p999" ? "p99.9" : p,
            ms: Math.max(0.1, l[`${p}_ms`]),
          })),
        ),
      },
      mark: { type: "line", point: true },
      encoding: {
        x: { field: "load", type: "quantitative", title: "offered load (% of capacity)" },
        y: { field: "ms", type: "quantitative", scale: { type: "log" }, title: "latency (ms, log scale)" },
        color: { field: "percentile", type: "nominal", sort: ["p50", "p90", "p99", "p99.9"] },
      },
    };
  }
  const soak = data<SoakData>("soak");
  if (soak) {
    specs["bench-soak"] = {
      ...BASE_CONFIG,
      title: {
        text: `Soak: ${soak.completed} jobs, memory sampled every second`,
        subtitle: `RSS of the API and worker processes; Redis used_memory (results retained ${soak.retention_s} s)`,
      },
      width: 480,
      height: 220,
      data: {
        values: soak.samples.flatMap((s) => [
          { t: s.t_s, series: "API RSS", mib: s.api_rss_mib },
          { t: s.t_s, series: "worker RSS", mib: s.worker_rss_mib },
          { t: s.t_s, series: "Redis used_memory", mib: s.redis_used_mib },
        ]),
      },
      mark: { type: "line", strokeWidth: 1.5 },
      encoding: {
        x: { field: "t", type: "quantitative", title: "seconds" },
        y: { field: "mib", type: "quantitative", title: "MiB" },
        color: { field: "series", type: "nominal", title: null },
      },
    };
  }
  return specs;
}

// ---------------------------------------------------------------- text

const PROSE: Record<Name, string> = {
  overhead:
    "What durability and the HTTP contract cost. The same trivial job at the same concurrency, one worker process each: the tutorial list queue (LPUSH / BRPOP / SET, no leases, retries or unique ids), bare BullMQ (`Queue.add` + `waitUntilFinished`), the same bare BullMQ behind a minimal HTTP route (a Fastify handler in its own process that adds the job and answers when it completes, and does nothing else: the least any HTTP front end costs), and Inferline end to end (HTTP POST with `Prefer: wait` through a separate API process: validation, job record, priority queue, worker, batcher, result; result cache and coalescing off). All four run at once and are measured in turns of 1000 requests, so drift of the machine hits them alike. The second table charges each process the CPU it used per job (from `/proc/<pid>/stat`; client is the benchmark process itself). On two cores all of them compete, so throughput is roughly the cores divided by that sum: an HTTP hop alone (a request built, sent, parsed, answered and read back) costs about as much CPU as a BullMQ job, which is why even the minimal route falls well short of bare BullMQ here. The third table sends one request at a time, the three taking turns: the round trip of a single job, which saturation does not inflate.",
  contract:
    "Client-contract costs against one API process: cache hits at a fixed arrival rate (open loop; latency inside the API from `Server-Timing` and at the client from each request's scheduled time), and enqueueing the same inputs with single POSTs vs the batch endpoint.",
  "wait-vs-poll":
    "How a client should get its result. The same jobs (the `echo` model with simulated inference time), the same number in flight: `Prefer: wait` on the POST vs POST then polling `GET /api/results/{id}` at a fixed interval. Polling adds up to one interval of latency and an HTTP request per poll.",
  batching:
    "Dynamic batching on a heavy model: the same model file served with maxBatchSize 1, 8, 32 and 64 by one worker process under the same closed-loop load. `wide` is a 25 M-parameter stand-in network (random weights: its cost, not its answers, is measured); `spam-mlp` is the trained built-in model.",
  scaling:
    "Worker processes on the heavy model: 1, 2 and 4 worker processes with one ONNX Runtime thread each, plus one process with ONNX Runtime's default thread count, under the same load. CPU per process is read from `/proc/<pid>/stat` over the measured interval (100% = one core); the dashed line is what the machine has. Where the total reaches it, more processes stop helping.",
  "open-loop":
    "Latency under load without coordinated omission: capacity of one API and one worker process on the heavy model is measured first (closed loop), then requests arrive at fixed rates of 25–150% of it. Each latency counts from the request's scheduled send time, so a backlog shows up in the numbers. Past 100% the queue grows for as long as the overload lasts.",
  soak: "A long run of distinct jobs through one API and one worker process (batch requests with `Prefer: wait`, so the load waits for its results; a 503 or 429 is retried after its `Retry-After`, as a client should). RSS of both processes and Redis `used_memory` are sampled every second; results are retained for a short `RESULT_RETENTION_SECONDS`, so Redis holds only the last few seconds of jobs and returns to its starting size afterwards. RSS that stays flat after warm-up means no leak. Redis `used_memory` is the whole server's: anything else using the same Redis shows up in it.",
  "metrics-overhead":
    "Metrics and cluster-wide stats on vs off on the end-to-end path: two Inferlines running at once, measured in turns of 1000 requests so drift of the machine hits both alike.",
};

function headlines(): string[] {
  const out: string[] = [];
  const overhead = data<OverheadData>("overhead");
  const bare = overhead?.results[SYSTEMS.bare];
  const e2e = overhead?.results[SYSTEMS.inferline];
  const list = overhead?.results[SYSTEMS.list];
  const floor = overhead?.results[SYSTEMS.floor];
  if (bare && e2e && list) {
    const soloBare = overhead.unloaded?.[SYSTEMS.bare];
    const soloE2e = overhead.unloaded?.[SYSTEMS.inferline];
    const solo =
      soloBare && soloE2e
        ? ` One request at a time, a \`Prefer: wait\` round trip takes p50 ${f2(soloE2e.p50_ms)} ms against ${f2(soloBare.p50_ms)} ms for BullMQ's own add → completed (${soloE2e.p50_ms >= soloBare.p50_ms ? "+" : ""}${f2(soloE2e.p50_ms - soloBare.p50_ms)} ms).`
        : "";
    const soloFloor = overhead.unloaded?.[SYSTEMS.floor];
    const floorText = floor
      ? ` The same BullMQ behind a minimal HTTP route reaches ${f0((floor.throughput_per_s / bare.throughput_per_s) * 100)}%: that is what an HTTP hop costs on this machine, and Inferline runs at ${f0((e2e.throughput_per_s / floor.throughput_per_s) * 100)}% of it.`
      : "";
    const soloFloorText =
      soloFloor && soloE2e
        ? ` Through the minimal route: p50 ${f2(soloFloor.p50_ms)} ms; Inferline adds ${f2(soloE2e.p50_ms - soloFloor.p50_ms)} ms to that.`
        : "";
    out.push(
      `**Durability and HTTP cost:** Inferline end to end runs at ${f0((e2e.throughput_per_s / bare.throughput_per_s) * 100)}% of bare BullMQ's throughput on a trivial job (${f0(e2e.throughput_per_s)} vs ${f0(bare.throughput_per_s)} jobs/s, p50 ${f1(e2e.p50_ms)} vs ${f1(bare.p50_ms)} ms); bare BullMQ runs at ${f0((bare.throughput_per_s / list.throughput_per_s) * 100)}% of the tutorial list queue.${floorText}${solo}${soloFloorText}`,
    );
  }
  const contract = data<ContractData>("contract");
  if (contract) {
    out.push(
      `**Cache hits** at ${contract.cache_hits.target_rate_per_s} req/s: p50 ${f2(contract.cache_hits.server_p50_ms)} ms, p99 ${f1(contract.cache_hits.server_p99_ms)} ms inside the API; the **batch endpoint** enqueues ${f1(contract.enqueue.ratio)}× as many inputs per second as single POSTs.`,
    );
  }
  const wp = data<WaitPollData>("wait-vs-poll");
  const wait = wp?.results[0];
  const poll = wp?.results[1];
  if (wait && poll) {
    out.push(
      `**\`Prefer: wait\` vs polling:** p50 ${f0(wait.p50_ms)} ms vs ${f0(poll.p50_ms)} ms (${poll.mode}), ${f1(wait.http_requests_per_job)} vs ${f1(poll.http_requests_per_job)} HTTP requests per job.`,
    );
  }
  const batching = data<BatchingData>("batching");
  if (batching) {
    const wide = batching.results.filter((r) => r.model.startsWith("wide-b"));
    const b1 = wide.find((r) => r.model === "wide-b1");
    const best = [...wide].sort((a, b) => b.throughput_rps - a.throughput_rps)[0];
    if (b1 && best) {
      out.push(
        `**Dynamic batching** on the 25 M-parameter model: ${f1(best.throughput_rps / b1.throughput_rps)}× the throughput of batch size 1 at maxBatchSize ${best.model.replace("wide-b", "")} (${f0(best.throughput_rps)} vs ${f0(b1.throughput_rps)} req/s).`,
      );
    }
  }
  const scaling = data<ScalingData>("scaling");
  if (scaling) {
    const one = scaling.results.find((r) => r.workers === 1 && r.ort_threads === 1);
    const two = scaling.results.find((r) => r.workers === 2);
    const four = scaling.results.find((r) => r.workers === 4);
    if (one && two && four) {
      out.push(
        `**Worker processes** (${scaling.cores} cores, one inference thread each): 2 workers give ${f2(two.throughput_per_s / one.throughput_per_s)}× the throughput of 1, 4 give ${f2(four.throughput_per_s / one.throughput_per_s)}×; all processes together use ${f0(four.cpu_all_total_percent)}% CPU of ${scaling.cores * 100}% at 4 workers.`,
      );
    }
  }
  const open = data<OpenLoopData>("open-loop");
  if (open) {
    const at = (load: number) => open.levels.find((l) => l.load === load);
    const l75 = at(0.75);
    const l150 = at(1.5);
    if (l75 && l150) {
      out.push(
        `**Open loop** (capacity ${f0(open.capacity_per_s)} req/s measured in the same run): p99 ${f0(l75.p99_ms)} ms at 75% load, ${f0(l150.p99_ms)} ms at 150% (the backlog grows while overloaded).`,
      );
    }
  }
  const soak = data<SoakData>("soak");
  if (soak) {
    out.push(
      `**Soak:** ${soak.completed} of ${soak.jobs} jobs completed at ${f0(soak.throughput_per_s)} jobs/s${soak.retried_requests ? ` (${soak.retried_requests} batch requests retried after a 503/429 with Retry-After)` : ""}; RSS after warm-up → end: API ${f0(soak.api_rss.after_warmup_mib)} → ${f0(soak.api_rss.end_mib)} MiB, worker ${f0(soak.worker_rss.after_warmup_mib)} → ${f0(soak.worker_rss.end_mib)} MiB; keys under the run's prefix ${soak.redis.keys_end} at the end of the load, ${soak.redis.keys_after_retention} once the retention time (${soak.retention_s} s) had passed; Redis used_memory (the whole shared server) ${f1(soak.redis.used_memory_before_mib)} MiB before, ${f1(soak.redis.used_memory_peak_mib)} peak, ${f1(soak.redis.used_memory_after_retention_mib)} after.`,
    );
  }
  const metrics = data<MetricsData>("metrics-overhead");
  if (metrics && Number.isFinite(metrics.throughput_overhead)) {
    out.push(
      `**Metrics and stats on** vs off: ${f1(metrics.throughput_overhead * 100)}% throughput overhead${metrics.throughput_overhead < 0 ? " (negative: on was faster, i.e. within noise)" : ""}${metrics.goal_max_overhead !== undefined ? `; goal ≤ ${f0(metrics.goal_max_overhead * 100)}%` : ""}.${recordingLine(metrics)}`,
    );
  }
  return out;
}

/**
 * The recording itself, timed directly: a steadier figure than the difference of two noisy
 * throughputs, which on a small shared machine can swing by more than the cost it measures.
 */
function recordingLine(m: MetricsData): string {
  const r = m.recording_cost;
  const cpuMs = m.off?.cpu_ms_per_request;
  if (!r || cpuMs === undefined || !(cpuMs > 0)) return "";
  const share = (r.api_us_per_request + r.worker_us_per_job) / (cpuMs * 1000);
  return ` Recording itself, timed directly: ${f1(r.api_us_per_request)} µs per request in the API and ${f1(r.worker_us_per_job)} µs per job in the worker, ${f1(share * 100)}% of the CPU the API and the worker spend on a request with them off.`;
}

function machineLine(m: Machine): string {
  return `${m.cpus} × ${m.cpu_model}, ${m.memory_gib} GiB memory, ${m.platform}, Node ${m.node}, Redis ${m.redis ?? "unknown"}`;
}

async function main() {
  const specs = chartSpecs();
  const images = new Map<string, string>();
  for (const [name, spec] of Object.entries(specs)) {
    const file = path.join(ROOT, "docs", "img", `${name}.svg`);
    writeFileSync(file, (await renderSvg(spec)) + "\n");
    images.set(name, `img/${name}.svg`);
    console.log(`wrote ${path.relative(ROOT, file)}`);
  }

  const all = [...results.values()];
  const machines = [...new Set(all.map((r) => machineLine(r.machine)))];
  const dates = all.map((r) => r.date).sort();
  const commits = [...new Set(all.map((r) => r.commit))];
  const quickOnes = all.filter((r) => r.quick).map((r) => r.scenario);
  const missing = ORDER.filter((n) => !results.has(n));
  const lines: string[] = [
    "# Benchmarks",
    "",
    "<!-- Generated by `npm run bench:report` from bench/results/*.json; do not edit by hand. -->",
    "",
    "Every number on this page was written by `npm run bench` into `bench/results/<scenario>.json`",
    "(with the machine, commit, date and command) and copied here by `npm run bench:report`, which",
    "also draws the charts. All comparisons are made side by side in one run on one machine: read",
    "the ratios, not the absolute numbers, which depend on the machine and on what else it was doing.",
    "",
    "## How to reproduce",
    "",
    "```sh",
    "npm install",
    `npm run bench                 # all scenarios (needs Redis on 127.0.0.1:6379); ${Math.round(all.reduce((t, r) => t + r.duration_s, 0) / 60)} min in the run below`,
    "npm run bench -- soak         # one scenario; --quick for a short smoke run",
    "npm run bench:report          # this page, the charts and README's Performance section",
    "```",
    "",
    "`BENCH_NODE_ARGS` adds Node options to the processes a scenario starts (Inferline's and the baselines'), e.g. `BENCH_NODE_ARGS=--cpu-prof npm run bench -- overhead` leaves a CPU profile of each in the working directory.",
    "",
    "## Where these numbers come from",
    "",
    `- machine: ${machines.join("; ")}`,
    `- date: ${dates[0] ?? "n/a"}${dates.length > 1 ? ` to ${dates[dates.length - 1]}` : ""}`,
    `- commit: ${commits.join(", ")}`,
    `- command: ${[...new Set(all.map((r) => r.invoked_as ?? r.command))].map((c) => `\`${c}\``).join(", ")}, then \`npm run bench:report\``,
    "- load average (1 min) at the start → end of each scenario, from the JSON: " +
      all
        .map((r) =>
          r.load_average_1m
            ? `${r.scenario} ${r.load_average_1m.start} → ${r.load_average_1m.end}`
            : `${r.scenario} n/a`,
        )
        .join("; "),
    "",
  ];
  if (quickOnes.length > 0) {
    lines.push(
      `> Only a \`--quick\` (smoke) result exists for: ${quickOnes.join(", ")}; treat those numbers as rough.`,
      "",
    );
  }
  if (missing.length > 0) lines.push(`> Not run yet: ${missing.join(", ")}.`, "");
  const busy = all.filter((r) => r.load_average_1m && r.load_average_1m.start > r.machine.cpus);
  if (busy.length > 0) {
    lines.push(
      `> The 1-minute load average was above the machine's ${busy[0]!.machine.cpus} cores at the start of: ${busy.map((r) => r.scenario).join(", ")}. It decays over about a minute, so it also counts the scenario that ran just before; by itself it does not say other work was running. Either way the side-by-side ratios are what to read.`,
      "",
    );
  }
  // Notes written by whoever ran the bench (what else the machine was doing, reruns); no numbers.
  const notesFile = path.join(RESULTS, "NOTES.md");
  if (existsSync(notesFile))
    lines.push("## Notes on this run", "", readFileSync(notesFile, "utf8").trim(), "");
  lines.push("## Headlines", "", ...headlines().map((h) => `- ${h}`), "");
  for (const name of ORDER) {
    const r = results.get(name);
    if (!r) continue;
    lines.push(`## ${name}${r.quick ? " (quick run)" : ""}`, "", PROSE[name], "");
    lines.push(
      `\`${r.invoked_as ?? r.command}\` · ${r.date} · ${r.duration_s} s · commit ${r.commit} · load average ${r.load_average_1m ? `${r.load_average_1m.start} → ${r.load_average_1m.end}` : "n/a"}`,
      "",
    );
    const img = images.get(`bench-${name}`);
    if (img) lines.push(`![${name}](${img})`, "");
    for (const t of r.tables) lines.push(formatTable(t).replace(/^### /, "#### "), "");
  }
  writeFileSync(DOC, lines.join("\n").replace(/\n+$/, "\n"));
  console.log(`wrote ${path.relative(ROOT, DOC)}`);

  // README: the Performance section between its markers.
  const readme = readFileSync(README, "utf8");
  const start = "<!-- bench:start -->";
  const end = "<!-- bench:end -->";
  const i = readme.indexOf(start);
  const j = readme.indexOf(end);
  if (i >= 0 && j > i) {
    const first = all[0];
    const body = [
      start,
      `Headline ratios from the last \`npm run bench\` (${first ? machineLine(first.machine) : "n/a"}; ${dates[0]?.slice(0, 10) ?? "n/a"}), copied by \`npm run bench:report\` from [docs/benchmarks.md](docs/benchmarks.md), which has the tables, charts and how to rerun them:`,
      "",
      ...headlines().map((h) => `- ${h}`),
      end,
    ].join("\n");
    writeFileSync(README, readme.slice(0, i) + body + readme.slice(j + end.length));
    console.log("updated README.md (Performance)");
  } else {
    console.log("README.md has no bench markers; Performance section not updated");
  }
}

await main();
