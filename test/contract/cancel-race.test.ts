import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { testConfig } from "../support/config.js";
import { call, eventually } from "../support/http.js";
import { cleanupPrefix, REDIS_URL, uniquePrefix } from "../support/redis.js";
import { delayingProxy, type DelayingProxy } from "../support/redis-proxy.js";

void describe("a request for an input whose job is being canceled", () => {
  const prefix = uniquePrefix("cancel-race");
  let proxy: DelayingProxy;
  let canceling: ApiHandle;
  let other: ApiHandle;
  let redis: Redis;
  /** The job whose cancelation is held half way. */
  let held = "";
  let withdrawn = false;

  before(async () => {
    // The API that cancels reaches Redis through a proxy that, once the job has been withdrawn
    // and tombstoned, holds back the steps after it (removing the job, freeing its slot).
    proxy = await delayingProxy(new URL(REDIS_URL), {
      holdRequest: (chunk) => {
        if (!held || !chunk.includes(held)) return 0;
        if (chunk.includes('"status":"canceled"')) {
          withdrawn = true;
          return 0;
        }
        return withdrawn ? 1500 : 0;
      },
    });
    canceling = await startApi(testConfig(prefix, { REDIS_URL: proxy.url, MODELS: "echo" }));
    other = await startApi(testConfig(prefix, { MODELS: "echo" }));
    redis = new Redis(REDIS_URL);
  });
  after(async () => {
    redis.disconnect();
    await canceling.close();
    await other.close();
    proxy.server.close();
    await cleanupPrefix(prefix);
  });

  void it("gets a job of its own, not the canceled one", async () => {
    const body = { text: "canceled while another asks" };
    const first = await call(other.url, "POST", "/api/ml/echo", body);
    assert.equal(first.status, 202);
    held = first.body.job_id as string;
    const cancel = call(canceling.url, "DELETE", `/api/results/${held}`);
    await eventually(
      async () => ((await redis.exists(`${prefix}:{echo}:ended:${held}`)) === 1 ? true : undefined),
      5000,
      10,
    );
    const next = await call(other.url, "POST", "/api/ml/echo", body);
    assert.equal(next.status, 202, JSON.stringify(next.body));
    assert.notEqual(next.body.job_id, held, "did not join the canceled job");
    assert.equal(next.body.status, "queued");
    const canceled = await cancel;
    assert.equal(canceled.status, 200, JSON.stringify(canceled.body));
    assert.equal(canceled.body.status, "canceled");
    // The new job still holds the input's in-flight slot: the next identical request joins it.
    const third = await call(other.url, "POST", "/api/ml/echo", body);
    assert.equal(third.body.job_id, next.body.job_id);
  });
});

void describe("a request replayed with its Idempotency-Key before its job's add landed", () => {
  const prefix = uniquePrefix("replay-cancel");
  const marker = "replayed-before-its-add";
  let proxy: DelayingProxy;
  let api: ApiHandle;
  let other: ApiHandle;

  before(async () => {
    // The first API's add of a job whose input carries the marker reaches Redis 1.5 s late;
    // the client's retry goes to another API process (behind the same load balancer).
    proxy = await delayingProxy(new URL(REDIS_URL), {
      holdRequest: (chunk) => (chunk.includes(marker) ? 1500 : 0),
    });
    api = await startApi(testConfig(prefix, { REDIS_URL: proxy.url, MODELS: "echo" }));
    other = await startApi(testConfig(prefix, { MODELS: "echo" }));
  });
  after(async () => {
    await api.close();
    await other.close();
    proxy.server.close();
    await cleanupPrefix(prefix);
  });

  void it("gets the same job, and that job can still be canceled: no one else shares it", async () => {
    const body = { text: marker };
    const headers = { "idempotency-key": `replay-${prefix}` };
    const first = call(api.url, "POST", "/api/ml/echo", body, headers);
    await sleep(300);
    const replay = await call(other.url, "POST", "/api/ml/echo", body, headers);
    const answered = await first;
    assert.equal(answered.status, 202, JSON.stringify(answered.body));
    assert.equal(replay.body.job_id, answered.body.job_id, JSON.stringify(replay.body));
    const canceled = await call(other.url, "DELETE", `/api/results/${String(answered.body.job_id)}`);
    assert.equal(canceled.status, 200, JSON.stringify(canceled.body));
    assert.equal(canceled.body.status, "canceled");
  });
});
