import { createServer, type Server } from "node:http";
import type { Metrics } from "./metrics.js";

/**
 * A worker's /metrics endpoint on its own port (workers have no HTTP API). Resolves with the
 * server, or undefined when the port is taken (several workers on one host): the worker keeps
 * working and the caller logs it.
 */
export async function serveMetrics(
  metrics: Metrics,
  host: string,
  port: number,
): Promise<Server | undefined> {
  const server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    metrics.text().then(
      (text) => res.writeHead(200, { "content-type": metrics.contentType }).end(text),
      (err: Error) => res.writeHead(500, { "content-type": "text/plain" }).end(`${err.message}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      err.code === "EADDRINUSE" || err.code === "EACCES" ? resolve(undefined) : reject(err),
    );
    server.listen(port, host, () => resolve(server));
  });
}
