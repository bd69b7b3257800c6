import { randomUUID } from "node:crypto";
import { createServer, type ServerResponse, type Server } from "node:http";
import {
  type AppError,
  InternalError,
  MethodNotAllowedError,
  RouteNotFoundError,
} from "../errors/catalog.js";
import type { Metrics } from "./metrics.js";

/**
 * A worker's /metrics endpoint on its own port (workers have no HTTP API). Resolves with the
 * server, or undefined when the port is taken (several workers on one host): the worker keeps
 * working and the caller logs it. `onError` hears of a scrape that failed, with the request id
 * its 500 answer carries.
 */
export async function serveMetrics(
  metrics: Metrics,
  host: string,
  port: number,
  onError: (err: Error, requestId: string) => void = () => {},
): Promise<Server | undefined> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    if (path !== "/metrics") {
      sendError(res, new RouteNotFoundError(`no route ${path.slice(0, 100)} here: only GET /metrics`));
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      sendError(res, new MethodNotAllowedError(req.method ?? "", path, ["GET", "HEAD"]));
      return;
    }
    metrics.text().then(
      (text) => res.writeHead(200, { "content-type": metrics.contentType }).end(text),
      (err: Error) => onError(err, sendError(res, new InternalError())),
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      err.code === "EADDRINUSE" || err.code === "EACCES" ? resolve(undefined) : reject(err),
    );
    server.listen(port, host, () => resolve(server));
  });
}

/**
 * An answer in the API's error shape, so that whoever scrapes the wrong path is told as clearly;
 * returns its request id.
 */
function sendError(res: ServerResponse, err: AppError): string {
  const requestId = randomUUID();
  const body = JSON.stringify(err.body());
  res
    .writeHead(err.status, {
      ...err.headers,
      "content-type": "application/json; charset=utf-8",
      "x-request-id": requestId,
    })
    .end(body);
  return requestId;
}
