import { LogController, type FastifyReply, type FastifyRequest } from "fastify";

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
    const fields = {
      event: "http_request",
      method: request.method,
      route: request.routeOptions.url ?? "(none)",
      status: reply.statusCode,
      duration_ms: Math.round(reply.elapsedTime * 100) / 100,
    };
    if (error) reply.log.error({ ...fields, err: error }, "request errored");
    else reply.log.info(fields, "request completed");
  }
}
