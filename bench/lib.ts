/** Shared shapes of the benchmark suite. Scenarios live in bench/scenarios/<name>.ts. */

export interface BenchContext {
  /** Short run (CI smoke test): same code paths, fewer requests. */
  readonly quick: boolean;
  readonly redisUrl: string;
  /** Progress line (overwritten in place on a terminal). */
  progress(label: string, done: number, total: number): void;
}

export interface BenchTable {
  readonly title: string;
  readonly columns: readonly string[];
  readonly rows: readonly (readonly (string | number)[])[];
}

export interface ScenarioResult {
  readonly name: string;
  readonly tables: readonly BenchTable[];
  /** Everything measured, written to bench/results/<name>.json. */
  readonly data: Record<string, unknown>;
}

export type Scenario = (ctx: BenchContext) => Promise<ScenarioResult>;

/** A table as markdown (numbers rounded to 3 significant-ish digits). */
export function formatTable(t: BenchTable): string {
  const cells = [
    t.columns.map(String),
    ...t.rows.map((r) => r.map((c) => (typeof c === "number" ? fmt(c) : c))),
  ];
  const widths = t.columns.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? "").length)));
  const line = (r: readonly string[]) =>
    "| " + r.map((c, i) => String(c).padEnd(widths[i]!)).join(" | ") + " |";
  return [
    `### ${t.title}`,
    "",
    line(cells[0]!),
    "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|",
    ...cells.slice(1).map(line),
  ].join("\n");
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2);
}

/** Percentile of a sorted copy (nearest rank). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export interface LoopResult {
  readonly latenciesMs: number[];
  readonly durationMs: number;
  readonly errors: number;
}

/**
 * Closed loop: `concurrency` callers each issue requests back to back until `total` are done.
 * Returns every latency (ms) and the wall time.
 */
export async function closedLoop(
  concurrency: number,
  total: number,
  fn: (i: number) => Promise<void>,
  onProgress?: (done: number) => void,
): Promise<LoopResult> {
  const latenciesMs: number[] = [];
  let next = 0;
  let errors = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (;;) {
        const i = next++;
        if (i >= total) return;
        const s = performance.now();
        try {
          await fn(i);
          latenciesMs.push(performance.now() - s);
        } catch {
          errors++;
        }
        onProgress?.(latenciesMs.length + errors);
      }
    }),
  );
  return { latenciesMs, durationMs: performance.now() - t0, errors };
}

export function summarize(r: LoopResult) {
  return {
    requests: r.latenciesMs.length,
    errors: r.errors,
    throughput_per_s: (r.latenciesMs.length / r.durationMs) * 1000,
    p50_ms: percentile(r.latenciesMs, 50),
    p99_ms: percentile(r.latenciesMs, 99),
  };
}

export interface OpenLoopResult {
  /** Latency of each completed request from its scheduled send time (ms). */
  readonly latenciesMs: number[];
  readonly scheduled: number;
  readonly errors: number;
  /** Requests not sent because `maxInFlight` were outstanding (counted as errors too). */
  readonly dropped: number;
  /** From the first scheduled send to the last completion (ms). */
  readonly durationMs: number;
  /** Largest delay between a request's scheduled time and its actual send (ms). */
  readonly maxSendLagMs: number;
}

/**
 * Open loop: requests are scheduled at a fixed rate for `seconds`, whether or not earlier ones
 * have returned, and each latency counts from the scheduled time, so a stall on the server (or
 * in this client) shows up in the numbers instead of silently delaying later sends
 * (no coordinated omission). Bounded: at most rate × seconds requests, at most `maxInFlight`
 * outstanding.
 */
export async function openLoop(
  ratePerS: number,
  seconds: number,
  fn: (i: number) => Promise<void>,
  opts: { maxInFlight?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<OpenLoopResult> {
  const total = Math.max(1, Math.round(ratePerS * seconds));
  const maxInFlight = opts.maxInFlight ?? 10_000;
  const latenciesMs: number[] = [];
  const pending: Promise<void>[] = [];
  let errors = 0;
  let dropped = 0;
  let inFlight = 0;
  let maxSendLagMs = 0;
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const scheduled = t0 + (i * 1000) / ratePerS;
    const wait = scheduled - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    maxSendLagMs = Math.max(maxSendLagMs, performance.now() - scheduled);
    if (inFlight >= maxInFlight) {
      dropped++;
      errors++;
      continue;
    }
    inFlight++;
    pending.push(
      fn(i)
        .then(
          () => void latenciesMs.push(performance.now() - scheduled),
          () => void errors++,
        )
        .finally(() => {
          inFlight--;
          opts.onProgress?.(latenciesMs.length + errors, total);
        }),
    );
  }
  await Promise.all(pending);
  return {
    latenciesMs,
    scheduled: total,
    errors,
    dropped,
    durationMs: performance.now() - t0,
    maxSendLagMs,
  };
}

/** Latency summary (ms) of a list of samples. */
export function latencySummary(ms: readonly number[]) {
  return {
    p50_ms: percentile(ms, 50),
    p90_ms: percentile(ms, 90),
    p99_ms: percentile(ms, 99),
    p999_ms: percentile(ms, 99.9),
    max_ms: ms.length ? Math.max(...ms) : NaN,
  };
}
