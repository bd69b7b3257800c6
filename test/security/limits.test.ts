import assert from "node:assert/strict";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import Fastify from "fastify";
import { BatchTooLargeError } from "../../src/errors/catalog.js";
import { installErrorHandling } from "../../src/http/error-handler.js";
import { jsonTooDeep, StreamSlots } from "../../src/security/index.js";
import { call, eventually } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { monitorCommands } from "../support/redis.js";

const code = (body: Record<string, unknown>) => (body.error as { code?: string } | undefined)?.code;
const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

void describe("request limits", () => {
  const inferline = useInferline("sec-limits", {
    env: {
      MODELS: "echo,sentiment",
      BODY_LIMIT_BYTES: "65536",
      JSON_MAX_DEPTH: "16",
      WAIT_MAX_SECONDS: "1",
    },
  });

  void it("JSON deeper than JSON_MAX_DEPTH: 400 json_too_deep, before parsing", async () => {
    const deep = await call(inferline.url, "POST", "/api/ml/echo", `{"value":${nested(40)}}`);
    assert.equal(deep.status, 400);
    assert.equal(code(deep.body), "json_too_deep");
    const hostile = await call(inferline.url, "POST", "/api/ml/echo", `{"value":${nested(30_000)}}`);
    assert.equal(code(hostile.body), "json_too_deep");
    const fine = await call(
      inferline.url,
      "POST",
      "/api/ml/echo",
      `{"value":${nested(10)},"text":"[[[[[[[[[[[[[[[[[[[["}`,
    );
    assert.equal(fine.status, 202);
  });

  void it("a body over BODY_LIMIT_BYTES: 413 payload_too_large", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/echo", { text: "x".repeat(70_000) });
    assert.equal(r.status, 413);
    assert.equal(code(r.body), "payload_too_large");
  });

  void it("text over the model's maxLength: 422 invalid_input", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/sentiment", { text: "a".repeat(20_001) });
    assert.equal(r.status, 422);
    assert.equal(code(r.body), "invalid_input");
  });

  void it("a batch of bad items lists at most 20 problems, as one input does, and counts the rest", async () => {
    // 256 small items with 21 unknown fields each: 5,120 problems (20 per item) in a 30 KB body.
    const item = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`f${i}`, 0]));
    const r = await call(inferline.url, "POST", "/api/ml/echo/batch", { inputs: Array(256).fill(item) });
    assert.equal(r.status, 422);
    const error = r.body.error as {
      message: string;
      details: { problems: unknown[]; problem_count: number };
    };
    assert.equal(error.details.problems.length, 20);
    assert.equal(error.details.problem_count, 256 * 20);
    assert.match(error.message, /inputs\[0\]\.f0 is not an input of this model/);
    assert.match(error.message, new RegExp(`; and ${256 * 20 - 20} more$`));
    assert.ok(JSON.stringify(r.body).length < 5000, `answer of ${JSON.stringify(r.body).length} bytes`);
  });

  void it("Prefer: wait is capped at WAIT_MAX_SECONDS", async () => {
    const started = Date.now();
    const r = await call(
      inferline.url,
      "POST",
      "/api/ml/echo",
      { text: "slow", sleep_ms: 30_000 },
      { prefer: "wait=600" },
    );
    assert.equal(r.status, 202);
    assert.equal(r.headers.get("preference-applied"), "wait=1");
    assert.ok(Date.now() - started < 5000);
  });

  void it("the depth scan ignores brackets inside strings and escapes", () => {
    assert.equal(jsonTooDeep(`{"a":"[[[[[[\\"[[[["}`, 2), false);
    assert.equal(jsonTooDeep(`{"a":[[1]]}`, 2), true);
  });
});

void describe("open event streams over HTTP", () => {
  const inferline = useInferline("sec-sse", { env: { MODELS: "echo", SSE_MAX_STREAMS: "1" } });

  void it("a stream beyond SSE_MAX_STREAMS gets 429 too_many_streams; closing one frees its slot", async () => {
    const job = await call(inferline.url, "POST", "/api/ml/echo", { text: "nobody runs me" });
    assert.equal(job.status, 202);
    const events = `${inferline.url}/api/results/${String(job.body.job_id)}/events`;
    const first = new AbortController();
    const open = await fetch(events, { signal: first.signal });
    assert.equal(open.status, 200);
    const refused = await call(inferline.url, "GET", `/api/results/${String(job.body.job_id)}/events`);
    assert.equal(refused.status, 429);
    assert.equal(code(refused.body), "too_many_streams");
    assert.ok(Number(refused.headers.get("retry-after")) >= 1);
    first.abort();
    await eventually(async () => {
      const again = new AbortController();
      const res = await fetch(events, { signal: again.signal });
      again.abort();
      return res.status === 200;
    }, 5000);
  });

  void it("a client that hangs up before its stream starts holds no slot", async () => {
    const job = await call(inferline.url, "POST", "/api/ml/echo", { text: "asked for, then left" });
    const path = `/api/results/${String(job.body.job_id)}/events`;
    const { hostname, port } = new URL(inferline.url);
    // The request arrives with the connection already closing: the stream would start after
    // its client is gone, and its job is never run, so nothing else would end it.
    await Promise.all(
      Array.from(
        { length: 5 },
        () =>
          new Promise<void>((resolve) => {
            const socket = connect(Number(port), hostname, () => {
              socket.end(`GET ${path} HTTP/1.1\r\nhost: ${hostname}\r\n\r\n`);
              socket.destroy();
            });
            socket.on("close", () => resolve());
            socket.on("error", () => {});
          }),
      ),
    );
    await eventually(async () => {
      const again = new AbortController();
      const res = await fetch(`${inferline.url}${path}`, { signal: again.signal });
      again.abort();
      return res.status === 200;
    }, 5000);
  });

  void it("a stream whose client left stops reading its job", async () => {
    const job = await call(inferline.url, "POST", "/api/ml/echo", { text: "watched, then not" });
    const id = String(job.body.job_id);
    const left = new AbortController();
    const res = await fetch(`${inferline.url}/api/results/${id}/events`, { signal: left.signal });
    assert.equal(res.status, 200);
    left.abort();
    await sleep(200);
    // Waits re-read a job every 2 s (JobWaiter.recheckMs): a stream still running would, here.
    const { commands } = await monitorCommands(() => sleep(2500));
    const reads = commands.filter((c) => c.args.includes(`${inferline.prefix}:{echo}:${id}`));
    assert.deepEqual(reads, []);
  });
});

void describe("Prefer: wait whose client left", () => {
  // No worker: the jobs stay queued, so only a wait still running would read them.
  const inferline = useInferline("sec-wait-left", { env: { MODELS: "echo" } });
  const jobReads = (commands: { args: string[] }[]) =>
    commands.filter((c) => c.args.some((a) => a.startsWith(`${inferline.prefix}:{echo}:echo.`)));

  void it("stops reading the job, on GET and on POST", async () => {
    const job = await call(inferline.url, "POST", "/api/ml/echo", { text: "waited for, then not" });
    assert.equal(job.status, 202);
    const left = [new AbortController(), new AbortController(), new AbortController()];
    const waits = [
      fetch(`${inferline.url}/api/results/${String(job.body.job_id)}`, {
        headers: { prefer: "wait=30" },
        signal: left[0]!.signal,
      }),
      fetch(`${inferline.url}/api/ml/echo`, {
        method: "POST",
        headers: { "content-type": "application/json", prefer: "wait=30" },
        body: JSON.stringify({ text: "submitted, then left" }),
        signal: left[1]!.signal,
      }),
      fetch(`${inferline.url}/api/ml/echo/batch`, {
        method: "POST",
        headers: { "content-type": "application/json", prefer: "wait=30" },
        body: JSON.stringify({ inputs: [{ text: "batched, then left" }] }),
        signal: left[2]!.signal,
      }),
    ].map((p) => p.catch(() => undefined));
    // Each wait has read its job once by now, and waits for news of it.
    await sleep(500);
    for (const c of left) c.abort();
    await Promise.all(waits);
    await sleep(200);
    // Waits re-read a job every 2 s (JobWaiter.recheckMs): a wait still running would, here.
    const { commands } = await monitorCommands(() => sleep(2500));
    assert.deepEqual(jobReads(commands), []);
  });
});

void describe("requests held waiting", () => {
  // No worker: every wait runs until its time is up.
  const inferline = useInferline("sec-wait-held", { env: { MODELS: "echo", WAIT_MAX_HELD: "2" } });

  void it("beyond WAIT_MAX_HELD are answered at once, without Preference-Applied; freed slots are reused", async () => {
    const wait = { prefer: "wait=3" };
    let held = 0;
    const holding = [
      call(inferline.url, "POST", "/api/ml/echo", { text: "held 1" }, wait),
      call(inferline.url, "POST", "/api/ml/echo/batch", { inputs: [{ text: "held 2" }] }, wait),
    ].map((p) => p.finally(() => held++));
    await sleep(300);
    const single = await call(inferline.url, "POST", "/api/ml/echo", { text: "one too many" }, wait);
    const batch = await call(
      inferline.url,
      "POST",
      "/api/ml/echo/batch",
      { inputs: [{ text: "too" }] },
      wait,
    );
    const read = await call(
      inferline.url,
      "GET",
      `/api/results/${String(single.body.job_id)}`,
      undefined,
      wait,
    );
    assert.equal(held, 0, "answered while both slots were still held");
    for (const r of [single, batch, read]) {
      assert.equal(r.status, 202, JSON.stringify(r.body));
      assert.equal(r.headers.get("preference-applied"), null);
    }
    const done = await Promise.all(holding);
    for (const r of done) assert.equal(r.headers.get("preference-applied"), "wait=3");
    // Both slots free again: a wait is honoured.
    const again = await call(
      inferline.url,
      "POST",
      "/api/ml/echo",
      { text: "slot free" },
      { prefer: "wait=1" },
    );
    assert.equal(again.headers.get("preference-applied"), "wait=1");
  });
});

void describe("stream and batch limits", () => {
  void it("event streams beyond SSE_MAX_STREAMS: 429 too_many_streams with Retry-After", async () => {
    const slots = new StreamSlots(2, 3);
    const app = Fastify();
    installErrorHandling(app, { bodyLimit: 1024, retryAfterSeconds: 3 });
    const held: (() => void)[] = [];
    app.get("/stream", async () => {
      held.push(slots.acquire());
      return { open: slots.open };
    });
    assert.equal((await app.inject("/stream")).statusCode, 200);
    assert.equal((await app.inject("/stream")).statusCode, 200);
    const refused = await app.inject("/stream");
    assert.equal(refused.statusCode, 429);
    assert.equal(refused.headers["retry-after"], "3");
    assert.equal(refused.json<{ error: { code: string } }>().error.code, "too_many_streams");
    const release = held.pop()!;
    release();
    release(); // releasing twice frees one slot only
    assert.equal(slots.open, 1);
    assert.equal((await app.inject("/stream")).statusCode, 200);
    await app.close();
  });

  void it("a batch over BATCH_MAX_ITEMS has its own code", () => {
    const err = new BatchTooLargeError(300, 256);
    assert.equal(err.status, 413);
    assert.equal(err.code, "batch_too_large");
  });
});
