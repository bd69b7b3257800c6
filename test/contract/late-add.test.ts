import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { testConfig, testEnv } from "../support/config.js";
import { call } from "../support/http.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, REDIS_URL, uniquePrefix } from "../support/redis.js";
import { delayingProxy, type DelayingProxy } from "../support/redis-proxy.js";

const MARKER = "late-add-marker";

void describe("an add that reaches Redis after the API answered 503", () => {
  const prefix = uniquePrefix("late-add");
  let proxy: DelayingProxy;
  let api: ApiHandle;
  let worker: Spawned;

  before(async () => {
    // Every chunk the API writes that carries MARKER reaches Redis 3 s late: the add of a job
    // with that input lands after the API gave up on it. Everything else passes in order. The
    // command timeout leaves room for a loaded machine: only the held add may exceed it.
    proxy = await delayingProxy(new URL(REDIS_URL), {
      holdRequest: (chunk) => (chunk.includes(MARKER) ? 3000 : 0),
    });
    api = await startApi(
      testConfig(prefix, { REDIS_URL: proxy.url, REDIS_COMMAND_TIMEOUT_MS: "1000", MODELS: "echo" }),
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
    await sleep(3300);
    const retry = await call(api.url, "POST", "/api/ml/echo", body, { ...headers, prefer: "wait=10" });
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal((retry.body.result as { echo: string }).echo, body.text);

    const again = await call(api.url, "POST", "/api/ml/echo", body, headers);
    assert.equal(
      again.body.job_id,
      retry.body.job_id,
      `the key stays bound to that one job: ${JSON.stringify(again.body)}`,
    );
    await sleep(300);
    const ran = worker.lines.filter((l) => l.event === "job_started").map((l) => l.job_id);
    assert.deepEqual(ran, [retry.body.job_id], "exactly one job ran, the one the retry reported");
  });
});
