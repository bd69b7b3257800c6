import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { after, before, describe, it } from "node:test";
import type { Redis } from "ioredis";
import { ResultCache } from "../../src/cache/result-cache.js";
import { makeGuard } from "../../src/queue/guard.js";
import { newJobId } from "../../src/queue/keys.js";
import { JobRecords } from "../../src/queue/records.js";
import { JobWaiter } from "../../src/queue/waiter.js";
import { createRedis, waitReady } from "../../src/redis/connection.js";
import { cleanupPrefix, REDIS_URL, uniquePrefix } from "../support/redis.js";

/**
 * A client's hang-up signal outlives each wait on it (an event stream waits again and again on
 * one): a wait that ends must take its listener off, and one still running must end at the abort.
 */
void describe("waiting on a job with its client's hang-up signal", () => {
  const prefix = uniquePrefix("wait-listeners");
  let redis: Redis;
  let waiter: JobWaiter;
  let records: JobRecords;
  let jobId: string;

  before(async () => {
    redis = createRedis(REDIS_URL, "command");
    await waitReady(redis, 5000);
    waiter = new JobWaiter(() => createRedis(REDIS_URL, "blocking"), prefix);
    await waiter.start(["echo"]);
    records = new JobRecords({
      redis,
      prefix,
      retentionSeconds: 60,
      failedRetentionSeconds: 60,
      guard: makeGuard(redis, 1000),
      waiter,
      cache: new ResultCache(redis, prefix),
      serves: (model) => model === "echo",
    });
    jobId = newJobId("echo");
    // No worker: the job stays queued, so every wait runs until its time is up.
    await records
      .queue("echo")
      .add(
        "predict",
        { model: "echo", version: "1", input: {}, priority: "normal", requestId: "r" },
        { jobId },
      );
  });

  after(async () => {
    await records.close();
    await waiter.close();
    redis.disconnect();
    await cleanupPrefix(prefix);
  });

  void it("leaves no listener behind after each of many waits", async () => {
    const client = new AbortController();
    for (let i = 0; i < 12; i++) {
      const view = await records.waitFor(jobId, 20, { signal: client.signal });
      assert.equal(view.status, "queued");
    }
    assert.equal(getEventListeners(client.signal, "abort").length, 0);
  });

  void it("ends a wait at once when the client goes away", async () => {
    const client = new AbortController();
    const t0 = performance.now();
    const waiting = records.waitFor(jobId, 10_000, { signal: client.signal });
    setTimeout(() => client.abort(), 50);
    assert.equal((await waiting).status, "queued");
    assert.ok(performance.now() - t0 < 5000, "the wait outlasted its client");
    assert.equal(getEventListeners(client.signal, "abort").length, 0);
  });
});
