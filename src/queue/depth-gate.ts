/**
 * Lets a request skip the admission round trip when admission could only answer "room".
 *
 * With no cache lookup and no coalescing to do, admission checks only the queue cap. Every
 * admission that does run returns the queue's depth; for `maxAgeMs` after such a reading, a
 * request may be admitted without asking Redis while that depth plus the jobs this process
 * has added since, this one included, stays within half the cap. Near the cap, or once the reading is older, every
 * request runs the exact check again (which takes a new reading).
 *
 * Several API processes each count only their own additions. Each stops skipping before its
 * reading plus its own additions pass half the cap, so with two processes the queue never
 * passes the cap; with R processes it could reach R/2 times the cap, but only if each added
 * about half the cap within `maxAgeMs` (thousands of jobs in 100 ms by default).
 */
export class DepthGate {
  private readonly readings = new Map<string, { depth: number; at: number; added: number }>();

  /** `maxAgeMs` 0 turns the gate off: every request is checked in Redis. */
  constructor(private readonly maxAgeMs: number) {}

  /** True when a job of `model` may be queued without checking its cap in Redis. */
  hasRoom(model: string, cap: number): boolean {
    const r = this.readings.get(model);
    if (!r || performance.now() - r.at > this.maxAgeMs) return false;
    return (r.depth + r.added + 1) * 2 <= cap;
  }

  /** An exact depth, just read by an admission. */
  read(model: string, depth: number): void {
    if (this.maxAgeMs > 0) this.readings.set(model, { depth, at: performance.now(), added: 0 });
  }

  /** Jobs this process added to `model`'s queue. */
  added(model: string, n: number): void {
    const r = this.readings.get(model);
    if (r) r.added += n;
  }
}
