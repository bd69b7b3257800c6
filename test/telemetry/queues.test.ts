import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { notRetryable, QueueInspector } from "../../src/telemetry/queues.js";
import { call, eventually } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { cleanupPrefix, REDIS_URL, uniquePrefix } from "../support/redis.js";

const HEX = "0123456789abcdef0123456789abcdef";

describe("retrying failed jobs", () => {
  describe("QueueInspector.retry", () => {
    const prefix = uniquePrefix("queues-retry");
    const redis = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    before(() => new Promise((resolve) => redis.once("ready", resolve)));
    after(async () => {
      redis.disconnect();
      await cleanupPrefix(prefix);
    });

    it("a job id naming a model not served opens no queue: nothing grows", async () => {
      const queues = new QueueInspector(redis, prefix);
      const listeners = () => redis.eventNames().map((e) => `${String(e)}:${redis.listenerCount(e)}`);
      const before = listeners();
      try {
        for (let i = 0; i < 50; i++)
          assert.equal(await queues.retry(`bogus${i}.${HEX}`, ["echo"]), undefined);
        // Each BullMQ queue on the connection adds its listeners to it.
        assert.deepEqual(listeners(), before);
        assert.equal(await queues.retry(`echo.${HEX}`, ["echo"]), undefined);
      } finally {
        await queues.close();
      }
    });
  });

  it("a job that is not failed is named by its status as clients see it, not BullMQ's state", () => {
    for (const [state, told] of [
      ["waiting", "queued"],
      ["prioritized", "queued"],
      ["delayed", "queued"],
      ["active", "active"],
      ["completed", "completed"],
      ["canceled", "canceled"],
    ] as const)
      assert.equal(notRetryable("echo.1", state).message, `job "echo.1" is ${told}, not failed`);
    assert.match(notRetryable("echo.1", "expired").message, /^job "echo.1" expired \(its deadline passed/);
  });

  describe("POST /api/admin/jobs/:id/retry", () => {
    const inferline = useInferline("queues-retry-route", {
      env: { MODELS: "echo", JOB_ATTEMPTS: "1" },
      worker: true,
    });

    it("404 job_not_found for a model that does not exist; 202 for a failed job", async () => {
      const bogus = await call(inferline.url, "POST", `/api/admin/jobs/nosuchmodel.${HEX}/retry`);
      assert.equal(bogus.status, 404);
      assert.equal((bogus.body.error as { code: string }).code, "job_not_found");

      const failed = await call(
        inferline.url,
        "POST",
        "/api/ml/echo",
        { text: "retry me", fail: "error" },
        { prefer: "wait=10" },
      );
      assert.equal(failed.body.status, "failed");
      const id = failed.body.job_id as string;
      const retried = await call(inferline.url, "POST", `/api/admin/jobs/${id}/retry`);
      assert.equal(retried.status, 202, JSON.stringify(retried.body));
      // It runs again, and fails again: its input asks for it.
      await eventually(async () => {
        const r = await call(inferline.url, "GET", `/api/results/${id}`);
        return r.body.status === "failed" && r.body.finished_at !== failed.body.finished_at ? r : undefined;
      });
    });

    it("an expired job is not retried: 409 alone, left out of the bulk retry", async () => {
      // Paused, so no worker starts it before its 50 ms deadline.
      assert.equal((await call(inferline.url, "POST", "/api/admin/models/echo/pause")).status, 200);
      const queued = await call(inferline.url, "POST", "/api/ml/echo?timeout_ms=50", { text: "too late" });
      assert.equal(queued.status, 202, JSON.stringify(queued.body));
      const id = queued.body.job_id as string;
      await new Promise((r) => setTimeout(r, 200));
      assert.equal((await call(inferline.url, "POST", "/api/admin/models/echo/resume")).status, 200);
      const ended = await eventually(async () => {
        const r = await call(inferline.url, "GET", `/api/results/${id}`);
        return r.body.status === "expired" ? r : undefined;
      });

      const single = await call(inferline.url, "POST", `/api/admin/jobs/${id}/retry`);
      assert.equal(single.status, 409, JSON.stringify(single.body));
      const error = single.body.error as { code: string; message: string };
      assert.equal(error.code, "job_not_failed");
      assert.match(error.message, /expired/);

      const bulk = await call(inferline.url, "POST", "/api/admin/jobs/failed/retry?model=echo");
      assert.equal(bulk.status, 200, JSON.stringify(bulk.body));
      await new Promise((r) => setTimeout(r, 300));
      const after = await call(inferline.url, "GET", `/api/results/${id}`);
      assert.equal(after.body.status, "expired");
      assert.equal(after.body.finished_at, ended.body.finished_at, "it did not run or end again");
    });

    it("a job the API ended before it started (canceled, or past its deadline) is 409, not unknown", async () => {
      // Paused: no worker starts them, so the API ends them (a cancel; a read past the deadline).
      assert.equal((await call(inferline.url, "POST", "/api/admin/models/echo/pause")).status, 200);
      try {
        const late = await call(inferline.url, "POST", "/api/ml/echo?timeout_ms=50", {
          text: "ended by a read",
        });
        const canceled = await call(inferline.url, "POST", "/api/ml/echo", { text: "ended by a cancel" });
        assert.equal(late.status, 202, JSON.stringify(late.body));
        assert.equal(canceled.status, 202, JSON.stringify(canceled.body));
        const lateId = late.body.job_id as string;
        const canceledId = canceled.body.job_id as string;
        await new Promise((r) => setTimeout(r, 200));
        assert.equal((await call(inferline.url, "GET", `/api/results/${lateId}`)).body.status, "expired");
        assert.equal(
          (await call(inferline.url, "DELETE", `/api/results/${canceledId}`)).body.status,
          "canceled",
        );

        for (const [id, status] of [
          [lateId, "expired"],
          [canceledId, "canceled"],
        ] as const) {
          const r = await call(inferline.url, "POST", `/api/admin/jobs/${id}/retry`);
          assert.equal(r.status, 409, JSON.stringify(r.body));
          const error = r.body.error as { code: string; message: string };
          assert.equal(error.code, "job_not_failed");
          assert.match(error.message, new RegExp(status));
          // Nothing changed: it still reads as it ended.
          assert.equal((await call(inferline.url, "GET", `/api/results/${id}`)).body.status, status);
        }
      } finally {
        await call(inferline.url, "POST", "/api/admin/models/echo/resume");
      }
    });
  });
});
