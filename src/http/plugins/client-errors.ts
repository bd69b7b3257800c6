import { randomUUID } from "node:crypto";
import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import type { SecurityHeaders } from "./security-headers.js";

/**
 * Requests Node's HTTP parser rejects before Fastify sees them (bad header bytes, oversized
 * headers, smuggling attempts) still get the API's JSON error shape, never an empty reply.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  const [status, code] =
    err.code === "HPE_HEADER_OVERFLOW"
      ? [431, "headers_too_large"]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "request_timeout"]
        : [400, "malformed_request"];
  const body = JSON.stringify({
    error: {
      code,
      message: `the HTTP request could not be read: ${STATUS_CODES[status] ?? "bad request"}`,
      details: {},
    },
  });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
      `x-request-id: ${randomUUID()}\r\nx-content-type-options: nosniff\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/**
 * Errors Fastify's router raises before any route or hook runs (a URL that does not decode, a
 * path parameter over the length limit): answered in the API's JSON error shape too, with the
 * request id and security headers the hooks would have set.
 */
export function frameworkErrors(applyHeaders: SecurityHeaders) {
  return (error: FastifyError, req: FastifyRequest, reply: FastifyReply): void => {
    const [status, code, message] =
      error.code === "FST_ERR_MAX_PARAM_LENGTH"
        ? [414, "uri_too_long", "a path segment of the URL is too long"]
        : error.code === "FST_ERR_BAD_URL"
          ? [400, "malformed_url", "the URL is not validly percent-encoded"]
          : [400, "bad_request", "the request could not be routed"];
    applyHeaders(req.raw, reply.raw, () => {});
    void reply
      .code(status)
      .header("x-request-id", req.id)
      .send({ error: { code, message, details: {} } });
  };
}
