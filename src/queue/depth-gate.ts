/**
 * Lets a request skip the admission round trip when admission could only answer "room".
 *
 * With no cache lookup and no coalescing to do, admission checks only the queue cap. Every
 * admission that does run returns the queue's depth; for `maxAgeMs` after such a reading, a
 * request may be admitted without asking Redis while that depth plus what this process added,
 * is adding and is asking Redis to admit since, this one included, stays within half the cap.
 * Near the cap, or once the reading is older, every request runs the exact check again (which
 * takes a new reading).
 *
 * A job admitted here is not seen by Redis until its add lands: this process's own checks in
 * Redis meanwhile count it (`unseen`, taken off the cap they check against), so one API process
 * never passes the cap. Other processes' checks do not see it: with R processes the queue can
 * pass the cap by what the others admitted here and have not added yet (each at most half the
 * cap, within one add's round trip of a reading).
 */
export class DepthGate {
  /** Per model: the last reading, and the jobs admitted here whose add was answered since. */
  private readonly readings = new Map<string, { depth: number; at: number; added: number }>();
  /** Per model: admitted here, add not answered yet (Redis may not have seen them). */
  private readonly pending = new Map<string, number>();
  /** Per model: admissions sent to Redis and not answered yet (their readings are to come). */
  private readonly asking = new Map<string, number>();

  /** `maxAgeMs` 0 turns the gate off: every request is checked in Redis. */
  constructor(private readonly maxAgeMs: number) {}

  /**
   * True when a job of `model` may be queued without checking its cap in Redis; it is then
   * counted as admitted until `settled` says its add was answered.
   */
  admit(model: string, cap: number): boolean {
    const r = this.readings.get(model);
    if (!r || performance.now() - r.at > this.maxAgeMs) return false;
    const known = r.depth + r.added + this.count(this.pending, model) + this.count(this.asking, model);
    if ((known + 1) * 2 > cap) return false;
    this.pending.set(model, this.count(this.pending, model) + 1);
    return true;
  }

  /**
   * Jobs admitted by `admit` whose add was answered (added, or failed: counted anyway, as a
   * timed-out add may still land). Jobs admitted in Redis need no such count: the next reading
   * includes them (a claim counts there until its job is in the queue).
   */
  settled(model: string, n: number): void {
    this.pending.set(model, Math.max(0, this.count(this.pending, model) - n));
    const r = this.readings.get(model);
    if (r) r.added += n;
  }

  /**
   * Jobs admitted here that Redis may not have seen yet: a check in Redis takes them off the
   * cap it checks against.
   */
  unseen(model: string): number {
    return this.count(this.pending, model);
  }

  /** An admission of `model` sent to Redis; the returned function says it was answered. */
  asked(model: string, n = 1): () => void {
    this.asking.set(model, this.count(this.asking, model) + n);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.asking.set(model, Math.max(0, this.count(this.asking, model) - n));
    };
  }

  /**
   * An exact depth, just read by an admission in Redis: the jobs queued and claimed then, the
   * one admitted by that admission included.
   */
  read(model: string, depth: number): void {
    if (this.maxAgeMs > 0) this.readings.set(model, { depth, at: performance.now(), added: 0 });
  }

  private count(map: Map<string, number>, model: string): number {
    return map.get(model) ?? 0;
  }
}
