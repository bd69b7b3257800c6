import { readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { Agent, setGlobalDispatcher } from "undici";

// Like a real client, pool connections: a test firing thousands of concurrent requests queues
// them on 128 sockets per server instead of opening thousands at once (which a loaded machine
// answers with connect timeouts that say nothing about the service).
setGlobalDispatcher(new Agent({ connections: 128, connectTimeout: 30_000 }));

export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Record<string, unknown>;
}

/** A JSON request against a running server. */
export async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const res = await fetch(base + path, {
    method,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
  };
}

/** Lowest port the kernel hands out for outgoing connections (and for listen(0)). */
function ephemeralLow(): number {
  try {
    return (
      Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || 32768
    );
  } catch {
    return 32768;
  }
}

/** True when nothing listens on `port` on the loopback right now. */
export function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/**
 * A loopback port nothing listens on right now, picked at random below the ephemeral range: a
 * port from listen(0) can be taken by any outgoing connection (a Redis client, say) before the
 * process meant to listen on it starts, and test files running side by side would draw the same
 * few numbers.
 */
export async function freePort(): Promise<number> {
  const high = Math.min(ephemeralLow(), 65536);
  const low = Math.min(10_000, high - 1000);
  for (;;) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (await canListen(port)) return port;
  }
}

/** Polls `fn` until it returns a truthy value or `ms` pass. */
export async function eventually<T>(
  fn: () => Promise<T | undefined | false>,
  ms = 15_000,
  every = 50,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** A raw HTTP answer: status, headers by lower-case name, body as text. */
export interface RawAnswer {
  readonly status: number;
  readonly headers: ReadonlyMap<string, string>;
  readonly body: string;
}

/**
 * Sends `raw` exactly as written on a fresh connection to 127.0.0.1:`port` (for requests no
 * HTTP client would send) and reads everything until the server closes it.
 */
export function sendRaw(port: number, raw: string, timeoutMs = 15_000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.end(raw));
    let data = "";
    socket.setEncoding("latin1");
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error("timeout")));
    socket.on("data", (c: string) => (data += c));
    socket.on("error", reject);
    socket.on("close", () => {
      const split = data.indexOf("\r\n\r\n");
      const [statusLine = "", ...lines] = (split >= 0 ? data.slice(0, split) : data).split("\r\n");
      const headers = new Map(
        lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
      );
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
      resolve({ status, headers, body: split >= 0 ? data.slice(split + 4) : "" });
    });
  });
}
