/**
 * Mergeable latency histograms: fixed log-scale buckets (four per doubling, ~19% wide) from
 * 0.25 ms to ~131 s, so counts from any number of processes and minutes simply add up and a
 * percentile read from the sum is within one bucket of the exact value.
 */
export const MIN_BUCKET = -8; // 2^(-8/4) = 0.25 ms
export const MAX_BUCKET = 68; // 2^(68/4) = 131 072 ms

/** Index of the bucket whose upper bound is the smallest one ≥ ms. */
export function bucketOf(ms: number): number {
  if (!(ms > 0)) return MIN_BUCKET;
  const k = Math.ceil(4 * Math.log2(ms) - 1e-9);
  return Math.min(MAX_BUCKET, Math.max(MIN_BUCKET, k));
}

export function upperBound(k: number): number {
  return 2 ** (k / 4);
}

/** Sparse histogram: bucket index → count. */
export type Buckets = Map<number, number>;

export function addTo(target: Buckets, k: number, n = 1): void {
  target.set(k, (target.get(k) ?? 0) + n);
}

export function total(b: Buckets): number {
  let n = 0;
  for (const c of b.values()) n += c;
  return n;
}

/**
 * The p-th percentile (0..100), interpolated inside its bucket; undefined when empty.
 */
export function percentileOf(b: Buckets, p: number): number | undefined {
  const n = total(b);
  if (n === 0) return undefined;
  const rank = Math.max(1, Math.ceil((p / 100) * n));
  let seen = 0;
  for (const k of [...b.keys()].sort((x, y) => x - y)) {
    const c = b.get(k)!;
    if (seen + c >= rank) {
      const lo = k === MIN_BUCKET ? 0 : upperBound(k - 1);
      const hi = upperBound(k);
      return lo + ((hi - lo) * (rank - seen)) / c;
    }
    seen += c;
  }
  return undefined;
}

/** Signed log-scale bins for regression outputs: 0 stays 0, others keep their sign. */
export function signedBucketOf(v: number): number {
  if (v === 0 || !Number.isFinite(v)) return 0;
  const k = Math.ceil(4 * Math.log2(Math.abs(v)) - 1e-9);
  // Shifted so that every |v| ≥ 2^-10 gets a positive index; sign carried separately.
  const idx = Math.max(1, Math.min(200, k + 41));
  return v < 0 ? -idx : idx;
}

/** [low, high] of a signed bin (see signedBucketOf). */
export function signedBounds(idx: number): [number, number] {
  if (idx === 0) return [0, 0];
  const k = Math.abs(idx) - 41;
  const lo = 2 ** ((k - 1) / 4);
  const hi = 2 ** (k / 4);
  return idx < 0 ? [-hi, -lo] : [lo, hi];
}
