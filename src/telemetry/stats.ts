import type { Redis } from "ioredis";
import { globalKey } from "../queue/keys.js";
import { bucketOf } from "./histogram.js";

/**
 * Cluster-wide stats: each process adds what it saw to per-minute hashes in Redis
 * (`<prefix>:{global}:stats:<minute>`), so any number of API and worker processes merge by
 * addition and a window of any length is the sum of its minutes. Fields are
 * `<model>|<version>|<metric>[|<sub>]` (model and version empty for process-wide counts):
 *
 * | metric | meaning |
 * |---|---|
 * | `req`, `5xx` | HTTP requests answered, of which server errors (model and version empty) |
 * | `sub` | jobs queued |
 * | `ok`, `fail`, `retry` | jobs completed, failed for good, attempts that will be retried |
 * | `hit`, `miss` | result cache lookups |
 * | `w|k`, `i|k`, `t|k` | histogram buckets (see histogram.ts) of queue wait, inference, total ms |
 * | `ws`, `is`, `ts` | sums of the same (ms) |
 * | `b|n` | batches of n jobs |
 * | `p|label`, `r|k` | predictions: class counts, or signed log bins of a regression value |
 * | `fbn`, `fbc`, `fba`, `fbs` | feedback: count, correct labels, sum of abs error, of squared error |
 *
 * Writes are batched: counts accumulate in memory and go out every STATS_FLUSH_INTERVAL_MS in
 * one pipeline, so recording costs a map update on the hot path.
 */
export function statsKey(prefix: string, minute: number): string {
  return globalKey(prefix, "stats", String(minute));
}

/** The last finished jobs (`<ms>:<1 ok|0 failed>`), newest first: the error-rate window. */
export function recentJobsKey(prefix: string): string {
  return globalKey(prefix, "recent-jobs");
}

export function field(model: string, version: string, metric: string, sub?: string | number): string {
  return sub === undefined ? `${model}|${version}|${metric}` : `${model}|${version}|${metric}|${sub}`;
}

/** Labels are free text: keep them out of the field separator. */
export function encodeLabel(label: string): string {
  return label.replace(/[|%]/g, (c) => encodeURIComponent(c)).slice(0, 64);
}

export interface StatsOptions {
  readonly flushIntervalMs: number;
  readonly retentionSeconds: number;
  /** Length of the recent-jobs list (HEALTH_ERROR_WINDOW_JOBS). */
  readonly recentJobs: number;
}

const MAX_PENDING_MINUTES = 30;

export class StatsRecorder {
  private pending = new Map<number, Map<string, number>>();
  private outcomes: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly options: StatsOptions,
    private readonly onError: (err: Error) => void = () => {},
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.options.flushIntervalMs);
    this.timer.unref();
  }

  private bucket(): Map<string, number> {
    const minute = Math.floor(Date.now() / 60_000);
    let m = this.pending.get(minute);
    if (!m) {
      m = new Map();
      this.pending.set(minute, m);
    }
    return m;
  }

  /** Adds n to a field of the current minute. */
  add(name: string, n = 1): void {
    const m = this.bucket();
    m.set(name, (m.get(name) ?? 0) + n);
  }

  count(model: string, version: string, metric: string, n = 1): void {
    this.add(field(model, version, metric), n);
  }

  /** A latency (ms) into histogram `metric` (w, i or t) and its sum. */
  observe(model: string, version: string, metric: "w" | "i" | "t", ms: number): void {
    const m = this.bucket();
    const b = field(model, version, metric, bucketOf(ms));
    m.set(b, (m.get(b) ?? 0) + 1);
    const s = field(model, version, `${metric}s`);
    m.set(s, (m.get(s) ?? 0) + ms);
  }

  /** A finished job for the error-rate window. */
  outcome(ok: boolean): void {
    this.outcomes.push(`${Date.now()}:${ok ? 1 : 0}`);
    if (this.outcomes.length > this.options.recentJobs) this.outcomes.shift();
  }

  /** Writes what accumulated in one pipeline. Concurrent calls share one flush. */
  flush(): Promise<void> {
    this.flushing ??= this.write().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async write(): Promise<void> {
    if (this.pending.size === 0 && this.outcomes.length === 0) return;
    const batch = this.pending;
    const outcomes = this.outcomes;
    this.pending = new Map();
    this.outcomes = [];
    const p = this.redis.pipeline();
    for (const [minute, fields] of batch) {
      const key = statsKey(this.prefix, minute);
      for (const [f, n] of fields) {
        if (Number.isInteger(n)) p.hincrby(key, f, n);
        else p.hincrbyfloat(key, f, n);
      }
      p.expire(key, this.options.retentionSeconds + 120);
    }
    if (outcomes.length > 0) {
      const key = recentJobsKey(this.prefix);
      p.lpush(key, ...outcomes);
      p.ltrim(key, 0, this.options.recentJobs - 1);
      p.expire(key, this.options.retentionSeconds);
    }
    try {
      const results = (await p.exec()) ?? [];
      const failed = results.find(([err]) => err);
      if (failed?.[0]) throw failed[0];
    } catch (err) {
      // Keep the counts for the next flush (bounded), so a Redis blip loses nothing.
      for (const [minute, fields] of batch) {
        const now = this.pending.get(minute) ?? new Map<string, number>();
        for (const [f, n] of fields) now.set(f, (now.get(f) ?? 0) + n);
        this.pending.set(minute, now);
      }
      this.outcomes = [...outcomes, ...this.outcomes].slice(-this.options.recentJobs);
      const minutes = [...this.pending.keys()].sort((a, b) => a - b);
      for (const m of minutes.slice(0, Math.max(0, minutes.length - MAX_PENDING_MINUTES)))
        this.pending.delete(m);
      this.onError(err as Error);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}
