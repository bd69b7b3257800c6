/** mulberry32: a small, fast, seedable PRNG; the same seed gives the same stream everywhere. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher–Yates shuffle of 0..n-1 driven by `random`. */
export function permutation(n: number, random: () => number): number[] {
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  return idx;
}

/**
 * The fixed split: shuffle with `seed`, hold out the first `testFraction` of the rows. Same
 * seed, same rows in the same order → same split.
 */
export function split<T>(rows: readonly T[], seed: number, testFraction: number): { train: T[]; test: T[] } {
  const order = permutation(rows.length, rng(seed));
  const nTest = Math.round(rows.length * testFraction);
  return {
    test: order.slice(0, nTest).map((i) => rows[i]!),
    train: order.slice(nTest).map((i) => rows[i]!),
  };
}
