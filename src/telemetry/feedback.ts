import type { Redis } from "ioredis";
import { modelKey } from "../queue/keys.js";

export type FeedbackOutcome =
  | { readonly kind: "label"; readonly predicted: string; readonly actual: string; readonly correct: boolean }
  | { readonly kind: "value"; readonly predicted: number; readonly actual: number; readonly error: number };

/**
 * Ground truth sent after the fact (`POST /api/results/{id}/feedback`). Each caller (API key)
 * gives one feedback per job: a marker key (kept as long as the job's result) makes its repeat a
 * no-op, so live accuracy cannot be skewed by resending. Per caller, not per job: a job answers
 * everyone it was shared with (a cache hit, a coalesced request), and the first of them to send
 * feedback must not take the others' place.
 */
export class FeedbackStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
  ) {}

  /** True the first time `caller` (an API key's id) gives feedback for this job. */
  async claim(model: string, jobId: string, caller: string, outcome: FeedbackOutcome): Promise<boolean> {
    const key = modelKey(this.prefix, model, "feedback", jobId, caller);
    const set = await this.redis.set(key, JSON.stringify(outcome), "EX", this.ttlSeconds, "NX");
    return set === "OK";
  }
}

/** Compares a prediction with the truth; undefined when they cannot be compared. */
export function compare(
  result: unknown,
  truth: { label?: string; value?: number },
): FeedbackOutcome | undefined {
  const r = (result ?? {}) as { label?: unknown; value?: unknown };
  if (truth.label !== undefined && typeof r.label === "string")
    return { kind: "label", predicted: r.label, actual: truth.label, correct: r.label === truth.label };
  if (truth.value !== undefined && typeof r.value === "number")
    return { kind: "value", predicted: r.value, actual: truth.value, error: r.value - truth.value };
  return undefined;
}
