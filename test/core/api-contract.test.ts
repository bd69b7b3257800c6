import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { startApi } from "../../src/api/main.js";
import { testConfig } from "../support/config.js";
import { call, freePort } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { cleanupPrefix, monitorCommands, uniquePrefix, type Ran } from "../support/redis.js";

/** How often a client read a job's record (Job.fromId is one HGETALL of its key). */
function recordReads(commands: Ran[], prefix: string, model: string, jobId: string): number {
  const key = `${prefix}:{${model}}:${jobId}`;
  return commands.filter((c) => !c.fromScript && c.args[0]?.toLowerCase() === "hgetall" && c.args[1] === key)
    .length;
}

describe("prediction API with a real worker", () => {
  const inferline = useInferline("contract", { worker: true });

  it("accepts with 202 and Location, then the result can be polled", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/sentiment", { text: "What a wonderful, happy day" });
    assert.equal(r.status, 202);
    assert.equal(r.body.status, "queued");
    assert.equal(r.body.model, "sentiment");
    assert.equal(r.body.version, "1");
    const id = r.body.job_id as string;
    assert.match(id, /^sentiment\.[0-9a-f]{32}$/);
    assert.equal(r.headers.get("location"), `/api/results/${id}`);
    assert.deepEqual(r.body.links, { self: `/api/results/${id}`, events: `/api/results/${id}/events` });
    assert.ok(r.headers.get("x-request-id"));

    let done: Record<string, unknown> | undefined;
    for (let i = 0; i < 100 && !done; i++) {
      const g = await call(inferline.url, "GET", `/api/results/${id}`);
      if (g.status === 200) done = g.body;
      else {
        assert.equal(g.status, 202);
        assert.ok(["queued", "active"].includes(g.body.status as string));
        await new Promise((res) => setTimeout(res, 50));
      }
    }
    assert.ok(done, "job completed");
    assert.equal(done.status, "completed");
    const result = done.result as { label: string; compound: number };
    assert.equal(result.label, "positive");
    assert.ok(result.compound > 0.5);
    const t = done.timings as { queue_wait_ms: number; inference_ms: number; total_ms: number };
    assert.ok(t.queue_wait_ms >= 0 && t.inference_ms >= 0 && t.total_ms >= t.queue_wait_ms);
  });

  it("Prefer: wait answers 200 with the result in the same request", async () => {
    const { result: r, commands } = await monitorCommands(() =>
      call(
        inferline.url,
        "POST",
        "/api/ml/sentiment",
        { text: "This is terrible and sad" },
        { prefer: "wait=10" },
      ),
    );
    assert.equal(r.status, 200);
    // The completion event carried the result: the job's record was never read.
    assert.equal(recordReads(commands, inferline.prefix, "sentiment", String(r.body.job_id)), 0);
    assert.equal(r.body.status, "completed");
    assert.equal((r.body.result as { label: string }).label, "negative");
    assert.equal(r.headers.get("preference-applied"), "wait=10");
    // The answer is built from the completion event; reading the record gives the same.
    const read = await call(inferline.url, "GET", `/api/results/${String(r.body.job_id)}`);
    assert.deepEqual(read.body, r.body);
    assert.equal(r.body.attempts, 1);
  });

  it("GET with Prefer: wait holds until the job ends", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/echo", { text: "slow", sleep_ms: 300 });
    assert.equal(r.status, 202);
    const t0 = Date.now();
    const { result: g, commands } = await monitorCommands(() =>
      call(inferline.url, "GET", `/api/results/${String(r.body.job_id)}`, undefined, {
        prefer: "wait=10",
      }),
    );
    assert.equal(g.status, 200);
    // One read of the state when the wait begins; the answer comes from the completion event.
    assert.equal(recordReads(commands, inferline.prefix, "echo", String(r.body.job_id)), 1);
    assert.equal(g.body.status, "completed");
    assert.deepEqual(g.body.result, { echo: "slow", attempt: 1 });
    assert.ok(Date.now() - t0 < 9000, "returned when the job finished, not at the deadline");
    assert.ok((g.body.timings as { total_ms: number }).total_ms >= 300);
    const read = await call(inferline.url, "GET", `/api/results/${String(r.body.job_id)}`);
    assert.deepEqual(read.body, g.body);
  });

  it("a wait shorter than the job returns 202 when it runs out", async () => {
    const r = await call(
      inferline.url,
      "POST",
      "/api/ml/echo",
      { text: "x", sleep_ms: 2500 },
      { prefer: "wait=1" },
    );
    assert.equal(r.status, 202);
    assert.ok(["queued", "active"].includes(r.body.status as string));
    await call(inferline.url, "GET", `/api/results/${String(r.body.job_id)}`, undefined, {
      prefer: "wait=10",
    });
  });

  it("a model version can be named, and an unknown one is 404", async () => {
    const ok = await call(
      inferline.url,
      "POST",
      "/api/ml/sentiment?version=1",
      { text: "fine" },
      { prefer: "wait=10" },
    );
    assert.equal(ok.status, 200);
    const bad = await call(inferline.url, "POST", "/api/ml/sentiment?version=9", { text: "fine" });
    assert.equal(bad.status, 404);
    assert.equal((bad.body.error as { code: string }).code, "version_not_found");
  });

  it("a job that fails twice then succeeds is retried and completes", async () => {
    const r = await call(
      inferline.url,
      "POST",
      "/api/ml/echo",
      { text: "flaky", fail: "error", fail_attempts: 2 },
      { prefer: "wait=20" },
    );
    assert.equal(r.status, 200);
    assert.equal(r.body.status, "completed");
    assert.deepEqual(r.body.result, { echo: "flaky", attempt: 3 });
    assert.equal(r.body.attempts, 3);
  });

  it("a job that always fails ends failed with its error", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/echo", { fail: "error" }, { prefer: "wait=20" });
    assert.equal(r.status, 200);
    assert.equal(r.body.status, "failed");
    assert.equal(r.body.attempts, 3);
    assert.deepEqual(r.body.error, {
      code: "inference_failed",
      message: "fail: injected error on attempt 3",
    });
    const again = await call(inferline.url, "GET", `/api/results/${String(r.body.job_id)}`);
    assert.equal(again.status, 200);
    assert.equal(again.body.status, "failed");
  });

  it("input the worker finds invalid fails at once without retry", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/echo", { fail: "invalid" }, { prefer: "wait=20" });
    assert.equal(r.status, 200);
    assert.equal(r.body.status, "failed");
    assert.equal(r.body.attempts, 1);
    assert.equal((r.body.error as { code: string }).code, "invalid_input");
  });

  it("lists models with versions and input schemas", async () => {
    const r = await call(inferline.url, "GET", "/api/models");
    assert.equal(r.status, 200);
    const models = r.body.models as { name: string; latest_version: string; input_schema: object }[];
    const names = models.map((m) => m.name);
    assert.ok(names.includes("sentiment") && names.includes("echo"));
    const s = models.find((m) => m.name === "sentiment")!;
    assert.equal(s.latest_version, "1");
    assert.deepEqual((s.input_schema as { required: string[] }).required, ["text"]);
    const one = await call(inferline.url, "GET", "/api/models/sentiment");
    assert.equal(one.body.name, "sentiment");
    assert.equal((await call(inferline.url, "GET", "/api/models/nope")).status, 404);
  });

  it("worker heartbeats make the service healthy", async () => {
    const h = await call(inferline.url, "GET", "/health");
    assert.equal(h.body.status, "healthy");
    const workers = h.body.workers as { pid: number; event_loop_delay_p99_ms: number; models: string[] }[];
    assert.equal(workers.length, 1);
    assert.equal(workers[0]!.pid, inferline.worker.proc.pid);
    assert.ok(workers[0]!.models.includes("sentiment"));
    assert.equal(typeof workers[0]!.event_loop_delay_p99_ms, "number");
    assert.equal((await call(inferline.url, "GET", "/health/ready")).status, 200);
    assert.equal((await call(inferline.url, "GET", "/health/live")).status, 200);
  });

  it("passes the request id to the worker's log lines", async () => {
    const r = await call(
      inferline.url,
      "POST",
      "/api/ml/sentiment",
      { text: "ok" },
      { prefer: "wait=10", "x-request-id": "trace-abc-123" },
    );
    assert.equal(r.headers.get("x-request-id"), "trace-abc-123");
    const line = await inferline.worker.waitForLine(
      (l) => l.event === "job_completed" && l.request_id === "trace-abc-123",
    );
    assert.equal(line.job_id, r.body.job_id);
    assert.equal(line.model, "sentiment");
  });
});

describe("Redis unreachable", () => {
  it("answers 503 with Retry-After quickly instead of hanging", async () => {
    const port = await freePort();
    const api = await startApi(testConfig(uniquePrefix("down"), { REDIS_URL: `redis://127.0.0.1:${port}` }));
    try {
      const t0 = Date.now();
      const r = await call(api.url, "POST", "/api/ml/sentiment", { text: "hello" });
      assert.equal(r.status, 503);
      assert.equal((r.body.error as { code: string }).code, "service_unavailable");
      assert.equal(r.headers.get("retry-after"), "5");
      const g = await call(api.url, "GET", "/api/results/sentiment.0123456789abcdef0123456789abcdef");
      assert.equal(g.status, 503);
      assert.ok(Date.now() - t0 < 1500, `answered in ${Date.now() - t0} ms`);
      assert.equal((await call(api.url, "GET", "/health/ready")).status, 503);
      assert.equal((await call(api.url, "GET", "/health/live")).status, 200);
    } finally {
      await api.close();
    }
  });
});

describe("an API process shutting down", () => {
  it("answers requests waiting on jobs at once with the job as it stands, and streams end", async () => {
    const prefix = uniquePrefix("api-shutdown");
    // A wait longer than the shutdown allows: held to the end, the client would be cut off.
    const api = await startApi(
      testConfig(prefix, { AUTH_DISABLED: "true", MODELS: "echo", SHUTDOWN_TIMEOUT_MS: "20000" }),
    );
    try {
      const queued = await call(api.url, "POST", "/api/ml/echo", { text: "watched" });
      const stream = fetch(`${api.url}/api/results/${String(queued.body.job_id)}/events`).then((r) =>
        r.text(),
      );
      const held = [
        call(api.url, "POST", "/api/ml/echo", { text: "no worker runs me" }, { prefer: "wait=30" }),
        call(api.url, "GET", `/api/results/${String(queued.body.job_id)}`, undefined, { prefer: "wait=30" }),
      ];
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      await api.close();
      const answers = await Promise.all(held);
      for (const a of answers) {
        assert.equal(a.status, 202, JSON.stringify(a.body));
        assert.equal(a.body.status, "queued");
      }
      assert.match(await stream, /event: status/);
      assert.ok(
        Date.now() - t0 < 15_000,
        `closed in ${Date.now() - t0} ms, before the waits or the shutdown timeout ran out`,
      );
    } finally {
      await api.close();
      await cleanupPrefix(prefix);
    }
  });
});
