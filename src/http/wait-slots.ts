import type { ServerResponse } from "node:http";
import { Slots } from "../lifecycle/slots.js";

/**
 * Bounds how many requests one API process holds waiting (`Prefer: wait`) at once: each holds a
 * socket, a wait registration and its response until its job ends or the wait is up. Beyond the
 * cap a request is answered at once, as without the preference (RFC 7240 lets a server not
 * honour one): no `Preference-Applied`, and the client polls or waits again later.
 */
export class WaitSlots extends Slots {
  /**
   * The seconds the request answered by `res` may wait: `seconds`, holding a slot until the
   * response closes (sent, or its client gone), or 0 when every slot is held.
   */
  take(res: ServerResponse, seconds: number): number {
    if (seconds <= 0) return 0;
    const release = this.tryAcquire();
    if (!release) return 0;
    res.once("close", release);
    return seconds;
  }
}
