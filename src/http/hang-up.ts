import { setMaxListeners } from "node:events";
import type { ServerResponse } from "node:http";

/**
 * Aborted when the client goes away before its response is complete (not when the response is
 * sent), so a `Prefer: wait` whose client left stops waiting and reading its job. The response's
 * "close" is the event to watch: the request's fires as soon as its body has been read.
 */
export function hangUpSignal(res: ServerResponse): AbortSignal {
  const gone = new AbortController();
  // One listener per job the request waits on, and a batch waits on all of its jobs at once.
  setMaxListeners(0, gone.signal);
  if (res.destroyed || res.socket?.destroyed) gone.abort();
  else res.once("close", () => !res.writableFinished && gone.abort());
  return gone.signal;
}
