import { randomBytes } from "node:crypto";
import { type Redis, ReplyError } from "ioredis";
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
 * | `exp`, `cxl` | jobs that expired, or were canceled, before a worker started them |
 * | `hit`, `miss` | result cache lookups |
 * | `w|k`, `i|k`, `t|k` | histogram buckets (see histogram.ts) of queue wait, inference, total ms |
 * | `ws`, `is`, `ts` | sums of the same (ms) |
 * | `b|n` | batches of n jobs |
 * | `p|label`, `r|k` | predictions: class counts, or signed log bins of a regression value |
 * | `fbn`, `fbc`, `fba`, `fbs` | feedback: count, correct labels, sum of abs error, of squared error |
 *
 * Writes are batched: counts accumulate in memory and go out every STATS_FLUSH_INTERVAL_MS in
 * one script call (FLUSH below), so recording costs a map update on the hot path.
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

/**
 * What one minute accumulated. Counts go out with HINCRBY; sums (milliseconds, feedback errors)
 * always with HINCRBYFLOAT: Redis refuses HINCRBY on a field holding a float, so a sum that
 * happens to be whole in one flush must not go as an integer into a field another flush made
 * fractional.
 */
interface MinuteCounts {
  readonly counts: Map<string, number>;
  readonly sums: Map<string, number>;
}

/** Redis refusals a later flush may get past: memory, failover, loading, a busy script. */
const TRANSIENT_REFUSAL = /^(OOM|READONLY|LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b/;

/**
 * ioredis's refusal of a command it did not write: the connection was not writable (Redis away,
 * or not connected yet) and commands do not wait for it (enableOfflineQueue off, as on the API's
 * connection). Where they wait, a flush goes out once the connection is back.
 */
const NOT_SENT = /isn't writeable|isn't ready and enableOfflineQueue/;

/**
 * Whether the counts of a command of a flush that failed with `err` go out again with the
 * next flush: only when the command certainly did not run. Redis refused it for now (out of
 * memory, failover, loading), or ioredis never sent it. A command Redis refused for good (a
 * value it cannot add, a key of another type) would fail every time; one whose outcome is
 * unknown (it timed out, or its connection dropped after it was written) may well have run.
 * Their counts are dropped: sending them again as a new flush could count them twice (ioredis's
 * own resend of the same flush is harmless: see FLUSH), while dropping them
 * loses at most one flush interval of one process's counts. Stats would rather under-count a
 * blip than report traffic that never happened.
 */
/** An error Redis returned for one operation of a flush, as ioredis reports a refused command. */
function refusal(message: string): Error {
  return new (ReplyError as new (message: string) => Error)(message);
}

function resend(err: Error): boolean {
  if (err instanceof ReplyError) return TRANSIENT_REFUSAL.test(err.message);
  return NOT_SENT.test(err.message);
}

/**
 * One flush, applied once. A connection that drops after Redis ran a flush but before its reply
 * came sends it again once it is back (ioredis resends what went unanswered): the flush's
 * sequence number, kept per recording process in the hash of the minute it was sent, makes the
 * second run a no-op. Each operation runs on its own (pcall): one Redis refuses (a key of
 * another type) fails alone, and its error comes back as [operation index, message, ...].
 *
 * KEYS[1]: the flushes hash; KEYS[2..]: the keys the operations name by index.
 * ARGV: process id, sequence, the hash's TTL (s); then per operation: code, key index, value
 * count, values (i HINCRBY, f HINCRBYFLOAT, e EXPIRE, l LPUSH, t LTRIM 0 <stop>).
 */
const FLUSH = `
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) <= last then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local failed = {}
local i, n = 4, 0
while i <= #ARGV do
  local code, key, count = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  local first, last = i + 3, i + 2 + count
  local r
  if code == 'i' then r = redis.pcall('HINCRBY', key, ARGV[first], ARGV[first + 1])
  elseif code == 'f' then r = redis.pcall('HINCRBYFLOAT', key, ARGV[first], ARGV[first + 1])
  elseif code == 'e' then r = redis.pcall('EXPIRE', key, ARGV[first])
  elseif code == 't' then r = redis.pcall('LTRIM', key, 0, ARGV[first])
  elseif code == 'l' then
    for s = first, last, 1000 do
      r = redis.pcall('LPUSH', key, unpack(ARGV, s, math.min(s + 999, last)))
      if type(r) == 'table' and r.err then break end
    end
  end
  if type(r) == 'table' and r.err then
    failed[#failed + 1] = n
    failed[#failed + 1] = r.err
  end
  i = last + 1
  n = n + 1
end
return failed
`;

/** Per minute: the last flush of each recording process that Redis applied. */
export function flushesKey(prefix: string, minute: number): string {
  return globalKey(prefix, "stats-flushes", String(minute));
}

type Flushing = Redis & { inferlineStatsFlush(...args: (string | number)[]): Promise<number | string[]> };

export class StatsRecorder {
  private readonly redis: Flushing;
  /** This recorder among all that flush to the same Redis, and its flushes in order. */
  private readonly instance = randomBytes(8).toString("hex");
  private sequence = 0;
  private pending = new Map<number, MinuteCounts>();
  private outcomes: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    redis: Redis,
    private readonly prefix: string,
    private readonly options: StatsOptions,
    private readonly onError: (err: Error) => void = () => {},
  ) {
    this.redis = redis as Flushing;
    if (typeof this.redis.inferlineStatsFlush !== "function")
      redis.defineCommand("inferlineStatsFlush", { lua: FLUSH });
  }

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.options.flushIntervalMs);
    this.timer.unref();
  }

  private bucket(minute = Math.floor(Date.now() / 60_000)): MinuteCounts {
    let m = this.pending.get(minute);
    if (!m) {
      m = { counts: new Map(), sums: new Map() };
      this.pending.set(minute, m);
    }
    return m;
  }

  /** Adds n to a count of the current minute. */
  add(name: string, n = 1): void {
    const m = this.bucket().counts;
    m.set(name, (m.get(name) ?? 0) + n);
  }

  count(model: string, version: string, metric: string, n = 1): void {
    this.add(field(model, version, metric), n);
  }

  /** Adds v to a sum of the current minute; a value that is not finite is left out. */
  sum(model: string, version: string, metric: string, v: number): void {
    if (!Number.isFinite(v)) return;
    const m = this.bucket().sums;
    const s = field(model, version, metric);
    m.set(s, (m.get(s) ?? 0) + v);
  }

  /** A latency (ms) into histogram `metric` (w, i or t) and its sum. */
  observe(model: string, version: string, metric: "w" | "i" | "t", ms: number): void {
    this.add(field(model, version, metric, bucketOf(ms)));
    this.sum(model, version, `${metric}s`, ms);
  }

  /** A finished job for the error-rate window. */
  outcome(ok: boolean): void {
    this.outcomes.push(`${Date.now()}:${ok ? 1 : 0}`);
    if (this.outcomes.length > this.options.recentJobs) this.outcomes.shift();
  }

  /** Writes what accumulated in one script call. Concurrent calls share one flush. */
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
    const keys = [flushesKey(this.prefix, Math.floor(Date.now() / 60_000))];
    const args: (string | number)[] = [this.instance, ++this.sequence, this.options.retentionSeconds + 120];
    // Per operation, how to put its counts back should it have to go out again.
    const putBack: ((() => void) | undefined)[] = [];
    const index = new Map<string, number>();
    const op = (code: string, key: string, ...values: (string | number)[]) => {
      let k = index.get(key);
      if (k === undefined) index.set(key, (k = keys.push(key)));
      args.push(code, k, values.length, ...values);
    };
    for (const [minute, { counts, sums }] of batch) {
      const key = statsKey(this.prefix, minute);
      for (const [f, n] of counts) {
        // Past 2^53 a count is no longer exact, and Redis takes no integer past 2^63.
        op(Number.isSafeInteger(n) ? "i" : "f", key, f, n);
        putBack.push(() => this.keep(minute, "counts", f, n));
      }
      for (const [f, v] of sums) {
        op("f", key, f, v);
        putBack.push(() => this.keep(minute, "sums", f, v));
      }
      op("e", key, this.options.retentionSeconds + 120);
      putBack.push(undefined);
    }
    if (outcomes.length > 0) {
      const key = recentJobsKey(this.prefix);
      op("l", key, ...outcomes);
      // Older than what was recorded meanwhile: they go before it.
      putBack.push(() => (this.outcomes = [...outcomes, ...this.outcomes].slice(-this.options.recentJobs)));
      op("t", key, this.options.recentJobs - 1);
      op("e", key, this.options.retentionSeconds);
      putBack.push(undefined, undefined);
    }
    // Per operation that failed, its error; the whole flush's when the script did not run.
    let errors: (Error | undefined)[];
    try {
      const reply = await this.redis.inferlineStatsFlush(keys.length, ...keys, ...args);
      errors = putBack.map(() => undefined);
      // -1: Redis applied this flush already (this is a resend).
      if (Array.isArray(reply))
        for (let i = 0; i + 1 < reply.length; i += 2)
          errors[Number(reply[i])] = refusal(String(reply[i + 1]));
    } catch (err) {
      errors = putBack.map(() => err as Error);
    }
    // Operations Redis applied are done; only those that failed (and may succeed later) go again.
    let failed: Error | undefined;
    let failures = 0;
    let kept = 0;
    errors.forEach((err, i) => {
      if (!err) return;
      failed ??= err;
      failures++;
      const back = putBack[i];
      if (back && resend(err)) {
        back();
        kept++;
      }
    });
    this.bound();
    if (failed) {
      const what = `${failures} of ${errors.length} commands failed, ${kept} kept for the next flush`;
      this.onError(new Error(`stats flush: ${what}: ${failed.message}`, { cause: failed }));
    }
  }

  private keep(minute: number, kind: keyof MinuteCounts, f: string, n: number): void {
    const m = this.bucket(minute)[kind];
    m.set(f, (m.get(f) ?? 0) + n);
  }

  /** Counts kept for a Redis that stays away are bounded: the oldest minutes go first. */
  private bound(): void {
    const minutes = [...this.pending.keys()].sort((a, b) => a - b);
    for (const m of minutes.slice(0, Math.max(0, minutes.length - MAX_PENDING_MINUTES)))
      this.pending.delete(m);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}
