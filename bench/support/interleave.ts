import { closedLoop, type LoopResult } from "../lib.js";
import { meterCpu } from "./procstat.js";

/** One system under comparison, already running. */
export interface Arm {
  readonly name: string;
  /** Its processes, charged their CPU per request (the benchmark process is `client`). */
  readonly pids: Record<string, number | undefined>;
  /** One request, waited for; `i` is unique across all arms and chunks. */
  readonly one: (i: number) => Promise<void>;
}

export interface ArmResult {
  /** Every chunk's latencies and durations added up. */
  readonly result: LoopResult;
  /** CPU ms per request by process, over all chunks. */
  readonly cpu: Record<string, number>;
  /** What `counters` counted per request, over all chunks (empty without counters). */
  readonly counts: Record<string, number>;
}

/**
 * Runs every arm in turn, `chunks` times, `chunkSize` requests at `concurrency` each time, the
 * order reversed every other round (A B C, C B A, ...). This machine's speed drifts from minute
 * to minute; run one after the other, each arm would meet a different machine, while taking
 * turns in short chunks spreads the drift over all of them alike.
 */
export async function interleaved(
  arms: readonly Arm[],
  opts: {
    readonly chunks: number;
    readonly chunkSize: number;
    readonly concurrency: number;
    readonly onProgress?: (arm: string, done: number, total: number) => void;
    /**
     * Running totals read before and after every chunk (say, Redis's command counts); what
     * they grew by during an arm's chunks is charged to that arm.
     */
    readonly counters?: () => Promise<Record<string, number>>;
  },
): Promise<Record<string, ArmResult>> {
  type Acc = {
    latenciesMs: number[];
    durationMs: number;
    errors: number;
    cpu: Record<string, number>;
    counts: Record<string, number>;
  };
  const acc = arms.map((): Acc => ({ latenciesMs: [], durationMs: 0, errors: 0, cpu: {}, counts: {} }));
  const total = opts.chunks * opts.chunkSize;
  let next = 0;
  for (let c = 0; c < opts.chunks; c++) {
    const order = c % 2 === 0 ? arms.map((_, k) => k) : arms.map((_, k) => arms.length - 1 - k);
    for (const k of order) {
      const arm = arms[k]!;
      const a = acc[k]!;
      const base = next;
      next += opts.chunkSize;
      const done = c * opts.chunkSize;
      const before = await opts.counters?.();
      const m = await meterCpu(arm.pids, opts.chunkSize, () =>
        closedLoop(
          opts.concurrency,
          opts.chunkSize,
          (i) => arm.one(base + i),
          (d) => opts.onProgress?.(arm.name, done + d, total),
        ),
      );
      a.latenciesMs.push(...m.result.latenciesMs);
      a.durationMs += m.result.durationMs;
      a.errors += m.result.errors;
      for (const [p, ms] of Object.entries(m.cpu)) a.cpu[p] = (a.cpu[p] ?? 0) + ms * opts.chunkSize;
      if (before) {
        const after = (await opts.counters?.()) ?? {};
        for (const [key, n] of Object.entries(after))
          a.counts[key] = (a.counts[key] ?? 0) + n - (before[key] ?? 0);
      }
    }
  }
  return Object.fromEntries(
    arms.map((arm, k) => {
      const { cpu, counts, ...result } = acc[k]!;
      const perRequest = (totals: Record<string, number>) =>
        Object.fromEntries(Object.entries(totals).map(([key, n]) => [key, n / total]));
      return [arm.name, { result, cpu: perRequest(cpu), counts: perRequest(counts) }];
    }),
  );
}
