/**
 * How fast each model's queue drains, measured from the job-finished events the API already
 * receives: finishes per second over the last minute. Used to tell a client turned away by a
 * full queue how long to wait (depth over drain rate), which covers both the service time and
 * how many workers are active.
 */
export class DrainRate {
  private readonly finishes = new Map<string, number[]>();
  constructor(private readonly windowMs = 60_000) {}

  record(model: string, now = Date.now()): void {
    let list = this.finishes.get(model);
    if (!list) this.finishes.set(model, (list = []));
    list.push(now);
    if (list.length > 10_000) list.splice(0, list.length - 10_000);
  }

  /** Finishes per second over the window (0 when none). */
  perSecond(model: string, now = Date.now()): number {
    const list = this.finishes.get(model);
    if (!list || list.length === 0) return 0;
    const from = now - this.windowMs;
    let i = 0;
    while (i < list.length && list[i]! < from) i++;
    if (i > 0) list.splice(0, i);
    if (list.length === 0) return 0;
    const span = Math.max(1000, now - list[0]!);
    return (list.length / span) * 1000;
  }

  /** Seconds until a queue `depth` deep has room under `cap` again (1..3600). */
  retryAfterSeconds(model: string, depth: number, cap: number, now = Date.now()): number {
    // With no finishes seen, assume a slow drain (one job every two seconds) rather than none.
    const rate = Math.max(this.perSecond(model, now), 0.5);
    return Math.min(3600, Math.max(1, Math.ceil((depth - cap + 1) / rate)));
  }
}
