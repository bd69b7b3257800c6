import { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";

/**
 * The status recorded (never sent) for a request whose client went away before its answer was
 * complete, as nginx logs it: a `Prefer: wait` given up on, an event stream closed.
 */
export const CLIENT_CLOSED_REQUEST = 499;

/** The fields of a request's one `http_request` line. */
function requestLine(request: FastifyRequest, reply: FastifyReply, status: number) {
  return {
    event: "http_request",
    method: request.method,
    route: request.routeOptions.url ?? "(none)",
    status,
    duration_ms: Math.round(reply.elapsedTime * 100) / 100,
  };
}

/**
 * One log line per request, written when it completes (method, route, status, duration),
 * instead of Fastify's two; the incoming line is kept at debug level.
 */
export class RequestLog extends LogController {
  constructor() {
    super({ requestIdLogLabel: "request_id" });
  }

  override incomingRequest(request: FastifyRequest): void {
    if (this.isLogDisabled(request)) return;
    // The path only: a query string may carry what a client should not have put there (a key).
    const path = request.url.split("?")[0];
    request.log.debug({ method: request.method, url: path }, "incoming request");
  }

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    if (this.isLogDisabled(request)) return;
    const fields = requestLine(request, reply, reply.statusCode);
    if (error) reply.log.error({ ...fields, err: error }, "request errored");
    else reply.log.info(fields, "request completed");
  }
}

/**
 * Fastify logs and counts a request when its answer has been sent; one whose client left first
 * never is. This records it too, as status 499: the log line and `onClosed` (the request
 * metrics), so a client that gives up is seen as one.
 */
export function recordClientHangUps(
  app: FastifyInstance,
  onClosed: (route: string, method: string, status: number, seconds: number) => void,
): void {
  app.addHook("onRequest", (request, reply, done) => {
    const res = reply.raw;
    res.once("close", () => {
      // Sent in full, or failed (Fastify records those itself).
      if (res.writableFinished || res.errored) return;
      const line = requestLine(request, reply, CLIENT_CLOSED_REQUEST);
      request.log.info(line, "client closed the connection before the answer");
      onClosed(line.route, line.method, line.status, reply.elapsedTime / 1000);
    });
    done();
  });
}
