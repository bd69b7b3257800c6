import { TooManyStreamsError } from "../errors/catalog.js";
import { Slots } from "../lifecycle/slots.js";

/**
 * Counts the long-lived streams (server-sent events) one API process holds open, so a flood of
 * subscribers cannot exhaust its sockets and memory. A route calls `acquire()` before it starts
 * streaming and the returned function when the stream ends (calling it twice is harmless).
 */
export class StreamSlots extends Slots {
  constructor(
    /** Streams allowed at once (SSE_MAX_STREAMS); 0 refuses every stream. */
    max: number,
    private readonly retryAfterSeconds = 5,
  ) {
    super(max);
  }

  /** Takes a slot or throws TooManyStreamsError (429 with Retry-After). */
  acquire(): () => void {
    const release = this.tryAcquire();
    if (!release) throw new TooManyStreamsError(this.max, this.retryAfterSeconds);
    return release;
  }
}
