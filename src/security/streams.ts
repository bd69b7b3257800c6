import { TooManyStreamsError } from "../errors/catalog.js";

/**
 * Counts the long-lived streams (server-sent events) one API process holds open, so a flood of
 * subscribers cannot exhaust its sockets and memory. A route calls `acquire()` before it starts
 * streaming and the returned function when the stream ends (calling it twice is harmless).
 */
export class StreamSlots {
  private count = 0;

  constructor(
    /** Streams allowed at once (SSE_MAX_STREAMS); 0 refuses every stream. */
    readonly max: number,
    private readonly retryAfterSeconds = 5,
  ) {}

  get open(): number {
    return this.count;
  }

  /** Takes a slot or throws TooManyStreamsError (429 with Retry-After). */
  acquire(): () => void {
    if (this.count >= this.max) throw new TooManyStreamsError(this.max, this.retryAfterSeconds);
    this.count++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.count--;
    };
  }
}
