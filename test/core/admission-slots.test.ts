import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Queue } from "bullmq";
import { ResultCache, type AdmitRequest } from "../../src/cache/result-cache.js";
import { queueName } from "../../src/queue/keys.js";
import { createRedis, waitReady } from "../../src/redis/connection.js";
import { cleanupPrefix, REDIS_URL, uniquePrefix } from "../support/redis.js";

/**
 * The in-flight slot between admission and the add: a request arriving in that gap joins the
 * claim (the job is on its way); a claim whose add never came stops being joined once the add
 * window has passed, and the next request takes the slot over.
 */
void describe("admission: in-flight slots before their job exists", () => {
  const prefix = uniquePrefix("admit");
  const redis = createRedis(REDIS_URL, "command");
  const cache = new ResultCache(redis, prefix);
  const req = (jobId: string, claimWindowMs: number): AdmitRequest => ({
    model: "echo",
    version: "1",
    hash: "h".repeat(64),
    useCache: false,
    coalesce: true,
    jobId,
    inflightTtlMs: 60_000,
    maxDepth: 1000,
    claimWindowMs,
  });

  after(async () => {
    redis.disconnect();
    await cleanupPrefix(prefix);
  });

  void it("joins a fresh claim, takes over a stale one, joins a claim whose job is queued", async () => {
    await waitReady(redis, 5000);
    const first = await cache.admit(req("echo.a", 300));
    assert.equal(first.kind, "claim");
    const second = await cache.admit(req("echo.b", 300));
    assert.deepEqual(second.kind === "join" && second.jobId, "echo.a", "the add is on its way");

    await sleep(400);
    const third = await cache.admit(req("echo.c", 300));
    assert.equal(third.kind, "claim", "the add never came: the slot is taken over");

    const queue = new Queue(queueName("echo"), { connection: redis, prefix });
    try {
      await queue.add("predict", {}, { jobId: "echo.c" });
      await sleep(400);
      const fourth = await cache.admit(req("echo.d", 300));
      assert.deepEqual(fourth.kind === "join" && fourth.jobId, "echo.c", "a queued job is joined at any age");
    } finally {
      await queue.close();
    }
  });
});
