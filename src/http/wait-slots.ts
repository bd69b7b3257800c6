import type { ServerResponse } from "node:http";

/**
 * Bounds how many requests one API process holds waiting (`Prefer: wait`) at once: each holds a
 * socket, a wait registration and its response until its job ends or the wait is up. Beyond the
 * cap a request is answered at once, as without the preference (RFC 7240 lets a server not
 * honour one): no `Preference-Applied`, and the client polls or waits again later.
 */
export class WaitSlots {
  private held = 0;

  constructor(private readonly max: number) {}

  /**
   * The seconds the request answered by `res` may wait: `seconds`, holding a slot until the
   * response closes (sent, or its client gone), or 0 when every slot is held.
   */
  take(res: ServerResponse, seconds: number): number {
    if (seconds <= 0 || this.held >= this.max) return 0;
    this.held++;
    res.once("close", () => this.held--);
    return seconds;
  }

  /** Requests waiting right now. */
  get inUse(): number {
    return this.held;
  }
}
