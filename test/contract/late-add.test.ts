import assert from "node:assert/strict";
import { connect, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { testConfig, testEnv } from "../support/config.js";
import { call } from "../support/http.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, REDIS_URL, uniquePrefix } from "../support/redis.js";

const MARKER = "late-add-marker";

/**
 * A TCP proxy in front of Redis that holds back, for `delayMs`, every chunk the API writes that
 * carries MARKER: the add of a job with that input reaches Redis after the API gave up on it.
 * Everything else passes through untouched and in order.
 */
function slowAddProxy(target: URL, delayMs: number): Promise<{ server: Server; url: string }> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname);
    sockets.add(client).add(upstream);
    let chain = Promise.resolve();
    client.on("data", (chunk) => {
      const held = chunk.includes(MARKER);
      chain = chain.then(async () => {
        if (held) await sleep(delayMs);
        upstream.write(chunk);
      });
    });
    upstream.on("data", (chunk) => client.write(chunk));
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
      resolve({ server, url: `redis://127.0.0.1:${port}` });
    }),
  );
}

void describe("an add that reaches Redis after the API answered 503", () => {
  const prefix = uniquePrefix("late-add");
  let proxy: { server: Server; url: string };
  let api: ApiHandle;
  let worker: Spawned;

  before(async () => {
    proxy = await slowAddProxy(new URL(REDIS_URL), 1200);
    api = await startApi(
      testConfig(prefix, { REDIS_URL: proxy.url, REDIS_COMMAND_TIMEOUT_MS: "300", MODELS: "echo" }),
    );
    worker = await spawnWorker(testEnv(prefix, { MODELS: "echo" }));
  });
  after(async () => {
    await stop(worker);
    await api.close();
    proxy.server.close();
    await cleanupPrefix(prefix);
  });

  void it("a retry with the same Idempotency-Key gets that job: it runs once", async () => {
    const body = { text: `${MARKER} once` };
    const headers = { "idempotency-key": `late-${prefix}` };
    const first = await call(api.url, "POST", "/api/ml/echo", body, headers);
    assert.equal(first.status, 503, JSON.stringify(first.body));
    assert.equal(first.body.error && (first.body.error as { code: string }).code, "service_unavailable");
    assert.ok(first.headers.get("retry-after"), "503 says when to retry");

    // The held add lands meanwhile; the client retries as Retry-After tells it to.
    await sleep(1500);
    const retry = await call(api.url, "POST", "/api/ml/echo", body, { ...headers, prefer: "wait=10" });
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal((retry.body.result as { echo: string }).echo, body.text);

    const again = await call(api.url, "POST", "/api/ml/echo", body, headers);
    assert.equal(again.body.job_id, retry.body.job_id, "the key stays bound to that one job");
    await sleep(300);
    const ran = worker.lines.filter((l) => l.event === "job_started").map((l) => l.job_id);
    assert.deepEqual(ran, [retry.body.job_id], "exactly one job ran, the one the retry reported");
  });
});
