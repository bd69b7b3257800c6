/**
 * A count of things one process holds at once (open event streams, requests held waiting), up
 * to `max`. What to do when none is free is the caller's: refuse, or do without.
 */
export class Slots {
  private count = 0;

  constructor(
    /** Slots allowed at once; 0 allows none. */
    readonly max: number,
  ) {}

  /** Slots held right now. */
  get open(): number {
    return this.count;
  }

  /** Takes a slot, or undefined when all are held. Release it with the returned function (twice is harmless). */
  tryAcquire(): (() => void) | undefined {
    if (this.count >= this.max) return undefined;
    this.count++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.count--;
    };
  }
}
