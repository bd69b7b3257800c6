import { randomUUID } from "node:crypto";
import { type IncomingMessage, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import {
  type AppError,
  BadRequestError,
  HeadersTooLargeError,
  MalformedRequestError,
  MethodNotAllowedError,
  MalformedUrlError,
  RequestTimeoutError,
  UriTooLongError,
} from "../../errors/catalog.js";
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
  const what = "the HTTP request could not be read";
  const problem =
    err.code === "HPE_HEADER_OVERFLOW"
      ? requestLineTooLong(err)
        ? new UriTooLongError(`${what}: its URL is too long`)
        : new HeadersTooLargeError(`${what}: its headers are too large`)
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? new RequestTimeoutError(`${what}: it did not arrive in time`)
        : new MalformedRequestError(`${what}: it is not valid HTTP/1.1`);
  endWithError(socket, problem);
}

/** A request line (method, URL, version) longer than this is a URL too long, not big headers. */
const LONGEST_REQUEST_LINE = 8192;

/**
 * Whether a request Node found too large overflowed in its request line: Node counts it with the
 * headers, but a client sending a huge query string is better told its URL is too long (414).
 * Judged from the bytes Node was parsing when it gave up, which hold the request's start when
 * it came in one piece; otherwise the answer stays 431.
 */
function requestLineTooLong(err: NodeJS.ErrnoException): boolean {
  const raw = (err as { rawPacket?: unknown }).rawPacket;
  if (!Buffer.isBuffer(raw) || !/^[A-Z]+ /.test(raw.subarray(0, 16).toString("latin1"))) return false;
  const end = raw.indexOf("\r\n");
  return (end === -1 ? raw.length : end) > LONGEST_REQUEST_LINE;
}

/**
 * CONNECT asks a proxy for a tunnel: Node hands it to a "connect" listener, or, with none, drops
 * the connection without a word. This is no proxy: 405 in the API's error shape, `Allow` listing
 * the methods its routes take (`methods()`, read when asked: routes are added after this).
 */
export function refuseConnect(methods: () => readonly string[]) {
  return (req: IncomingMessage, socket: Socket): void =>
    endWithError(socket, new MethodNotAllowedError("CONNECT", (req.url ?? "").slice(0, 100), methods()));
}

/** Answers a request no route will see with the API's JSON error shape, and closes the connection. */
function endWithError(socket: Socket, problem: AppError): void {
  const status = problem.status;
  const body = JSON.stringify(problem.body());
  const extra = Object.entries(problem.headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join("");
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
      `x-request-id: ${randomUUID()}\r\nx-content-type-options: nosniff\r\n${extra}` +
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
    const problem =
      error.code === "FST_ERR_MAX_PARAM_LENGTH"
        ? new UriTooLongError("a path segment of the URL is too long")
        : error.code === "FST_ERR_BAD_URL"
          ? new MalformedUrlError("the URL is not validly percent-encoded")
          : new BadRequestError("the request could not be routed");
    applyHeaders(reply.raw);
    void reply.code(problem.status).header("x-request-id", req.id).send(problem.body());
  };
}
