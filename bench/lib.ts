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
