import { connect, createServer, type Server, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * A TCP proxy in front of Redis that holds back Redis's replies for `delay.ms`: commands reach
 * Redis (and run) at once, their answers come late, in order.
 */
export function slowReplyProxy(target: URL): Promise<{ server: Server; url: string; delay: { ms: number } }> {
  const delay = { ms: 0 };
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname);
    sockets.add(client).add(upstream);
    let replies = Promise.resolve();
    client.on("data", (chunk) => upstream.write(chunk));
    upstream.on("data", (chunk) => {
      const due = Date.now() + delay.ms;
      replies = replies.then(async () => {
        if (due > Date.now()) await sleep(due - Date.now());
        if (client.writable) client.write(chunk);
      });
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", close).on("error", close);
    upstream.on("close", close).on("error", close);
  });
  server.on("close", () => sockets.forEach((s) => s.destroy()));
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      resolve({ server, url: `redis://127.0.0.1:${port}`, delay });
    }),
  );
}
