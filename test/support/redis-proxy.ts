import { connect, createServer, type Server, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

export interface DelayingProxy {
  readonly server: Server;
  /** A Redis URL that goes through the proxy. */
  readonly url: string;
  /** How long Redis's replies are held back (ms); change it at any time. */
  readonly replyDelay: { ms: number };
  /** Cuts every connection open now, as a network blip does (new ones are accepted). */
  dropConnections(): void;
}

/**
 * A TCP proxy in front of Redis that can hold traffic back, each direction in order:
 *  - `holdRequest(chunk)`: ms to hold a chunk the client writes before Redis gets it (a slow add);
 *  - `rewriteRequest(chunk)`: what of that chunk reaches Redis (a connection lost half way);
 *  - `replyDelay.ms`: how long Redis's replies are held (commands run at once, answers come late).
 */
export function delayingProxy(
  target: URL,
  opts: {
    holdRequest?: (chunk: Buffer) => number;
    rewriteRequest?: (chunk: Buffer) => Buffer;
    replyDelayMs?: number;
  } = {},
): Promise<DelayingProxy> {
  const replyDelay = { ms: opts.replyDelayMs ?? 0 };
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname);
    sockets.add(client).add(upstream);
    let requests = Promise.resolve();
    let replies = Promise.resolve();
    const relay = (chain: Promise<void>, to: Socket, holdMs: number, chunk: Buffer) => {
      const due = Date.now() + holdMs;
      return chain.then(async () => {
        if (due > Date.now()) await sleep(due - Date.now());
        if (to.writable) to.write(chunk);
      });
    };
    client.on("data", (chunk: Buffer) => {
      const sent = opts.rewriteRequest?.(chunk) ?? chunk;
      requests = relay(requests, upstream, opts.holdRequest?.(sent) ?? 0, sent);
    });
    upstream.on("data", (chunk: Buffer) => {
      replies = relay(replies, client, replyDelay.ms, chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", close).on("error", close);
    upstream.on("close", close).on("error", close);
  });
  server.on("close", () => sockets.forEach((s) => s.destroy()));
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      resolve({
        server,
        url: `redis://127.0.0.1:${port}`,
        replyDelay,
        dropConnections: () => sockets.forEach((s) => s.destroy()),
      });
    }),
  );
}
