import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
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
