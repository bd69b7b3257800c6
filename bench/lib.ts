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
