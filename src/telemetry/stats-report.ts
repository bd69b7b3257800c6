import type { Redis } from "ioredis";
import { type Buckets, percentileOf, signedBounds } from "./histogram.js";
import { encodeLabel, statsKey } from "./stats.js";

/** Windows /api/stats answers for, in minutes. */
export const STATS_WINDOWS = { "5m": 5, "15m": 15, "1h": 60, "6h": 360, "24h": 1440 } as const;
export type StatsWindow = keyof typeof STATS_WINDOWS;

/** What a model version is, for labelling predictions and comparing feedback with training. */
export interface VersionInfo {
  readonly task: string;
  readonly labels?: readonly string[];
  readonly training?: unknown;
}

export interface LatencySummary {
  readonly count: number;
  readonly avg_ms: number | null;
  readonly p50_ms: number | null;
  readonly p95_ms: number | null;
  readonly p99_ms: number | null;
}

/** Sums of one scope (everything, a model, a version, a minute): metric (+sub) → value. */
type Acc = Map<string, number>;

function bump(acc: Acc, k: string, n: number): void {
  acc.set(k, (acc.get(k) ?? 0) + n);
}

function buckets(acc: Acc, metric: string): Buckets {
  const b: Buckets = new Map();
  const p = `${metric}|`;
  for (const [k, n] of acc) if (k.startsWith(p)) b.set(Number(k.slice(p.length)), n);
  return b;
}

/** A label as encodeLabel stored it; one cut at 64 characters may end in half an escape. */
function decodeLabel(stored: string): string {
  try {
    return decodeURIComponent(stored);
  } catch {
    return stored;
  }
}

function subs(acc: Acc, metric: string): [string, number][] {
  const p = `${metric}|`;
  return [...acc].filter(([k]) => k.startsWith(p)).map(([k, n]) => [decodeLabel(k.slice(p.length)), n]);
}

const r3 = (v: number | undefined) =>
  v === undefined || !Number.isFinite(v) ? null : Math.round(v * 1000) / 1000;
const ratio = (a: number, b: number) => (b > 0 ? r3(a / b) : null);
/** A rate over `seconds`; null when they cover no time (a window that only just began). */
const perSecond = (n: number, seconds: number | null) =>
  seconds !== null && seconds > 0 ? r3(n / seconds) : null;

function latency(acc: Acc, metric: "w" | "i" | "t"): LatencySummary {
  const b = buckets(acc, metric);
  let count = 0;
  for (const n of b.values()) count += n;
  return {
    count,
    avg_ms: count > 0 ? r3((acc.get(`${metric}s`) ?? 0) / count) : null,
    p50_ms: r3(percentileOf(b, 50)),
    p95_ms: r3(percentileOf(b, 95)),
    p99_ms: r3(percentileOf(b, 99)),
  };
}

/** Sums of a scope; `seconds` is the time its counts cover (null: rates are not known). */
function summary(acc: Acc, seconds: number | null) {
  const get = (k: string) => acc.get(k) ?? 0;
  const completed = get("ok");
  const failed = get("fail");
  const sizes = subs(acc, "b");
  const batches = sizes.reduce((s, [, n]) => s + n, 0);
  const batched = sizes.reduce((s, [size, n]) => s + Number(size) * n, 0);
  return {
    submitted: get("sub"),
    completed,
    failed,
    retried: get("retry"),
    expired: get("exp"),
    canceled: get("cxl"),
    throughput_per_s: perSecond(completed, seconds),
    error_rate: ratio(failed, completed + failed),
    cache: { hits: get("hit"), misses: get("miss"), hit_rate: ratio(get("hit"), get("hit") + get("miss")) },
    latency_ms: { wait: latency(acc, "w"), inference: latency(acc, "i"), total: latency(acc, "t") },
    batch: {
      batches,
      avg_size: ratio(batched, batches),
      sizes: Object.fromEntries(sizes.sort((a, b) => Number(a[0]) - Number(b[0]))),
    },
  };
}

function predictions(acc: Acc, info: VersionInfo | undefined) {
  const classes = subs(acc, "p");
  if (classes.length > 0) {
    const n = classes.reduce((s, [, c]) => s + c, 0);
    // The manifest's labels, each looked up as the worker stored it (encoded); without a
    // manifest, the labels seen.
    const counts = info?.labels
      ? Object.fromEntries(info.labels.map((l) => [l, acc.get(`p|${encodeLabel(l)}`) ?? 0]))
      : Object.fromEntries(classes);
    return {
      kind: "classes" as const,
      count: n,
      counts,
      shares: Object.fromEntries(Object.entries(counts).map(([l, c]) => [l, ratio(c, n)])),
    };
  }
  const bins = subs(acc, "r")
    .map(([k, count]) => ({ idx: Number(k), count }))
    .sort((a, b) => a.idx - b.idx);
  if (bins.length > 0) {
    return {
      kind: "histogram" as const,
      count: bins.reduce((s, b) => s + b.count, 0),
      bins: bins.map((b) => {
        const [low, high] = signedBounds(b.idx);
        return { low: r3(low), high: r3(high), count: b.count };
      }),
    };
  }
  return null;
}

function feedback(acc: Acc, info: VersionInfo | undefined) {
  const n = acc.get("fbn") ?? 0;
  // A version the catalog no longer knows: regression feedback is the kind that sums errors.
  const regression = info ? info.task === "regression" : acc.has("fba");
  const live =
    n === 0
      ? { count: 0 }
      : regression
        ? { count: n, mae: r3((acc.get("fba") ?? 0) / n), rmse: r3(Math.sqrt((acc.get("fbs") ?? 0) / n)) }
        : { count: n, accuracy: ratio(acc.get("fbc") ?? 0, n) };
  return { live, training: info?.training ?? null };
}

/** Reads the per-minute buckets of a window and sums them by fleet, model, version and minute. */
export class StatsReader {
  /**
   * @param flushIntervalMs STATS_FLUSH_INTERVAL_MS of the processes writing the stats (ms;
   *   default 0): counts reach Redis with each process's flush, on average half an interval
   *   after they happened, and rates leave that lag out of the time they divide by.
   * @param retentionSeconds STATS_RETENTION_SECONDS of the processes writing the stats (s;
   *   default: forever): a window is cut to the minutes still certainly kept, since minutes
   *   Redis has expired would read as minutes without traffic and pull every rate down.
   */
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly flushIntervalMs = 0,
    private readonly retentionSeconds = Infinity,
  ) {}

  /**
   * Minutes, the current one included, that are all still in Redis. A minute's bucket expires
   * STATS_RETENTION_SECONDS + 120 s after a write to it, and its first write comes no earlier
   * than its start.
   */
  keptMinutes(): number {
    return Math.max(1, Math.ceil((this.retentionSeconds + 120) / 60) - 1);
  }

  async report(
    window: StatsWindow | number,
    describe: (model: string, version: string) => VersionInfo | undefined = () => undefined,
  ) {
    const minutes = Math.min(typeof window === "number" ? window : STATS_WINDOWS[window], this.keptMinutes());
    const nowMs = Date.now();
    const now = Math.floor(nowMs / 60_000);
    const first = now - minutes + 1;
    const p = this.redis.pipeline();
    for (let m = first; m <= now; m++) p.hgetall(statsKey(this.prefix, m));
    const rows = (await p.exec()) ?? [];

    const all: Acc = new Map();
    const http: Acc = new Map();
    const byModel = new Map<string, Acc>();
    const byVersion = new Map<string, Acc>();
    const series: { t: string; acc: Acc; http: Acc }[] = [];
    const versionSeries = new Map<string, Map<number, Acc>>();
    rows.forEach(([err, raw], i) => {
      if (err) throw err;
      const minuteAcc: Acc = new Map();
      const minuteHttp: Acc = new Map();
      for (const [f, v] of Object.entries((raw ?? {}) as Record<string, string>)) {
        const n = Number(v);
        const cut = f.indexOf("|", f.indexOf("|") + 1);
        const [model, version] = f.slice(0, cut).split("|") as [string, string];
        const metric = f.slice(cut + 1);
        if (model === "") {
          bump(http, metric, n);
          bump(minuteHttp, metric, n);
          continue;
        }
        bump(all, metric, n);
        bump(minuteAcc, metric, n);
        let ma = byModel.get(model);
        if (!ma) byModel.set(model, (ma = new Map<string, number>()));
        bump(ma, metric, n);
        const vk = `${model}|${version}`;
        let va = byVersion.get(vk);
        if (!va) byVersion.set(vk, (va = new Map<string, number>()));
        bump(va, metric, n);
        if (metric.startsWith("p|") || metric.startsWith("i")) {
          let vs = versionSeries.get(vk);
          if (!vs) versionSeries.set(vk, (vs = new Map<number, Acc>()));
          let acc = vs.get(i);
          if (!acc) vs.set(i, (acc = new Map<string, number>()));
          bump(acc, metric, n);
        }
      }
      series.push({ t: new Date((first + i) * 60_000).toISOString(), acc: minuteAcc, http: minuteHttp });
    });

    // The window ends with the current minute, which is still filling: rates divide by the time
    // its counts cover (up to now, less the flush lag), not by whole minutes.
    const seconds = (nowMs - this.flushIntervalMs / 2 - first * 60_000) / 1000;
    const models: Record<string, ReturnType<typeof summary> & { versions: Record<string, unknown> }> = {};
    for (const [model, acc] of [...byModel].sort((a, b) => a[0].localeCompare(b[0]))) {
      const versions: Record<string, unknown> = {};
      for (const [vk, va] of byVersion) {
        const [m, version] = vk.split("|") as [string, string];
        if (m !== model) continue;
        const info = describe(model, version);
        const vs = versionSeries.get(vk) ?? new Map<number, Acc>();
        versions[version] = {
          ...summary(va, seconds),
          task: info?.task ?? null,
          predictions: predictions(va, info),
          feedback: feedback(va, info),
          // Per minute: prediction class counts and inference time, to see drift over time.
          series: series.map((s, i) => {
            const acc = vs.get(i) ?? new Map<string, number>();
            const lat = latency(acc, "i");
            return {
              t: s.t,
              predictions: Object.fromEntries(subs(acc, "p")),
              inference_p50_ms: lat.p50_ms,
              inference_p95_ms: lat.p95_ms,
            };
          }),
        };
      }
      models[model] = { ...summary(acc, seconds), versions };
    }

    return {
      window: typeof window === "number" ? `${window}m` : window,
      minutes,
      from: new Date(first * 60_000).toISOString(),
      to: new Date((now + 1) * 60_000).toISOString(),
      generated_at: new Date().toISOString(),
      requests: {
        total: http.get("req") ?? 0,
        server_errors: http.get("5xx") ?? 0,
        per_s: perSecond(http.get("req") ?? 0, seconds),
      },
      ...summary(all, seconds),
      models,
      // One point per minute; one whose counts may not all be in has no rate yet (a partial
      // minute would plot as a drop at the end of every chart): the current minute, and the one
      // before it until every process has flushed since it ended.
      series: series.map((s, i) => {
        const over = (first + i + 1) * 60_000 + this.flushIntervalMs <= nowMs;
        const sm = summary(s.acc, over ? 60 : null);
        return {
          t: s.t,
          requests: s.http.get("req") ?? 0,
          completed: sm.completed,
          failed: sm.failed,
          throughput_per_s: sm.throughput_per_s,
          error_rate: sm.error_rate,
          cache_hit_rate: sm.cache.hit_rate,
          wait_p95_ms: sm.latency_ms.wait.p95_ms,
          inference_p95_ms: sm.latency_ms.inference.p95_ms,
          total_p50_ms: sm.latency_ms.total.p50_ms,
          total_p95_ms: sm.latency_ms.total.p95_ms,
          total_p99_ms: sm.latency_ms.total.p99_ms,
          batch_avg_size: sm.batch.avg_size,
        };
      }),
    };
  }

  /** Finished jobs in the error-rate window: the last `jobs` of them within `ms`. */
  async recentOutcomes(key: string, jobs: number, ms: number): Promise<{ total: number; failed: number }> {
    const entries = await this.redis.lrange(key, 0, jobs - 1);
    const since = Date.now() - ms;
    let total = 0;
    let failed = 0;
    for (const e of entries) {
      const [t, ok] = e.split(":");
      if (Number(t) < since) continue;
      total++;
      if (ok === "0") failed++;
    }
    return { total, failed };
  }
}

export type StatsReport = Awaited<ReturnType<StatsReader["report"]>>;
