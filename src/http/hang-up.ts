import type { ServerResponse } from "node:http";

/**
 * Aborted when the client goes away before its response is complete (not when the response is
 * sent), so a `Prefer: wait` whose client left stops waiting and reading its job. The response's
 * "close" is the event to watch: the request's fires as soon as its body has been read.
 */
export function hangUpSignal(res: ServerResponse): AbortSignal {
  const gone = new AbortController();
  if (res.destroyed || res.socket?.destroyed) gone.abort();
  else res.once("close", () => !res.writableFinished && gone.abort());
  return gone.signal;
}
