import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, it } from "node:test";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { InferlineClient, InferlineError, JobFailedError, WaitTimeoutError } from "../../src/client/index.js";
import { testConfig, testEnv } from "../support/config.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import { makeRepository } from "./fixtures.js";

describe("typed client against a live server", () => {
  const prefix = uniquePrefix("client");
  const repo = makeRepository({ tiny: { limits: { maxQueueDepth: 1 } } });
  const env = { MODEL_REPOSITORY: repo.dir, AUTH_DISABLED: "true" };
  let api: ApiHandle;
  let pollingApi: ApiHandle;
  let worker: Spawned;
  before(async () => {
    api = await startApi(testConfig(prefix, env));
    // A server that never holds requests (WAIT_MAX_SECONDS=0): the client must poll.
    pollingApi = await startApi(testConfig(prefix, { ...env, WAIT_MAX_SECONDS: "0" }));
    worker = await spawnWorker(testEnv(prefix, env), ["--models", "sentiment,tiny", "--concurrency", "1"]);
  });
  after(async () => {
    await stop(worker);
    await api.close();
    await pollingApi.close();
    await cleanupPrefix(prefix);
    repo.remove();
  });

  it("waits for a result in one request", async () => {
    const client = new InferlineClient({ baseUrl: api.url });
    const p = await client.predict<{ label: string }>("sentiment", { text: "wonderful client" });
    assert.equal(p.result.label, "positive");
    assert.equal(p.view.status, "completed");
  });

  it("polls when the server does not hold requests", async () => {
    const requests: string[] = [];
    const client = new InferlineClient({
      baseUrl: pollingApi.url,
      fetch: async (url, init) => {
        requests.push(`${init?.method ?? "GET"} ${url instanceof Request ? url.url : url.toString()}`);
        return fetch(url, init);
      },
    });
    const p = await client.predict<{ echo: string }>("tiny", { text: "poll me", sleep_ms: 300 });
    assert.equal(p.result.echo, "poll me");
    const polls = requests.filter((r) => r.startsWith("GET")).length;
    assert.ok(polls >= 1, "polled the result");
    // With pauses of 100, 200, 400 ms, not in a tight loop (hundreds of requests).
    assert.ok(polls <= 8, `${polls} polls for a 300 ms job`);
  });

  it("a batch whose answer was lost is sent again and gets the jobs of the first", async () => {
    let lost: { jobs: { job_id: string }[] } | undefined;
    const client = new InferlineClient({
      baseUrl: api.url,
      fetch: async (url, init) => {
        const res = await fetch(url, init);
        const href = url instanceof Request ? url.url : url.toString();
        if (href.includes("/batch") && lost === undefined) {
          lost = (await res.json()) as { jobs: { job_id: string }[] };
          throw new TypeError("connection reset");
        }
        return res;
      },
    });
    const views = await client.submitBatch("sentiment", [
      { text: "once, gladly" },
      { text: "only once, sadly" },
    ]);
    assert.ok(lost, "the first answer was dropped");
    assert.deepEqual(
      views.map((v) => v.job_id),
      lost.jobs.map((j) => j.job_id),
    );
  });

  it("retries a gateway's HTML error, waiting until the date Retry-After gives", async () => {
    let calls = 0;
    const gateway = (init?: RequestInit) =>
      ++calls === 1
        ? // An HTTP date has whole seconds: 2 s ahead is at least 1 s ahead once truncated.
          new Response("<html><body>502 Bad Gateway</body></html>", {
            status: 502,
            headers: {
              "content-type": "text/html",
              "retry-after": new Date(Date.now() + 2000).toUTCString(),
            },
          })
        : fetch(`${api.url}/api/ml/sentiment`, init);
    const t0 = Date.now();
    const client = new InferlineClient({ baseUrl: api.url, fetch: async (_url, init) => gateway(init) });
    const p = await client.predict<{ label: string }>("sentiment", { text: "through a proxy, lovely" });
    assert.equal(p.result.label, "positive");
    assert.equal(calls, 2);
    assert.ok(Date.now() - t0 >= 500, "waited for the date Retry-After named");
    const once = new InferlineClient({ baseUrl: api.url, maxRetries: 0, fetch: async () => gateway() });
    calls = 0;
    await assert.rejects(
      once.submit("sentiment", { text: "x" }),
      (e: unknown) => e instanceof InferlineError && e.status === 502 && e.code === "http_502",
    );
  });

  it("retries after 429 honouring Retry-After, then succeeds", async () => {
    const client = new InferlineClient({ baseUrl: api.url, maxRetryDelayMs: 1000 });
    // Fill the one-deep queue with a slow job so the next submit is turned away at first.
    const blocker = await client.submit("tiny", { text: "blocker", sleep_ms: 1500 }, { wait: 0 });
    const behind = await client.submit("tiny", { text: "behind", sleep_ms: 1500 }, { wait: 0 });
    let saw429 = false;
    const watching = new InferlineClient({
      baseUrl: api.url,
      maxRetryDelayMs: 1000,
      fetch: async (url, init) => {
        const res = await fetch(url, init);
        if (res.status === 429) saw429 = true;
        return res;
      },
    });
    const p = await watching.predict<{ echo: string }>("tiny", { text: "eventually" }, { wait: 10 });
    assert.equal(p.result.echo, "eventually");
    assert.ok(saw429, "was turned away at least once");
    await client.result(blocker.job_id, { wait: 10 });
    await client.result(behind.job_id, { wait: 10 });
  });

  it("reports errors with their code, and failed jobs as JobFailedError", async () => {
    const client = new InferlineClient({ baseUrl: api.url, maxRetries: 0 });
    await assert.rejects(
      client.predict("nope", {}),
      (e: unknown) => e instanceof InferlineError && e.code === "model_not_found",
    );
    await assert.rejects(
      client.predict("tiny", { fail: "invalid" }),
      (e: unknown) => e instanceof JobFailedError && e.code === "invalid_input",
    );
  });

  it("predict gives up after maxWaitMs, its first request included", async () => {
    const prefers: string[] = [];
    const client = new InferlineClient({
      baseUrl: api.url,
      fetch: async (url, init) => {
        prefers.push(new Headers(init?.headers).get("prefer") ?? "");
        return fetch(url, init);
      },
    });
    let jobId = "";
    await assert.rejects(
      client.predict("tiny", { text: "longer than the caller waits", sleep_ms: 2500 }, { maxWaitMs: 500 }),
      (e: unknown) => {
        if (!(e instanceof WaitTimeoutError)) return false;
        jobId = e.view.job_id;
        return true;
      },
    );
    assert.equal(prefers[0], "wait=0", "the submission is held no longer than the call may wait");
    // The job goes on; let it end before the suite moves on.
    assert.equal((await client.result(jobId, { wait: 10 })).status, "completed");
  });

  it("polls at once after each wait a server that caps Prefer: wait held in full", async () => {
    // This server holds a request 1 s at most, less than the client asks.
    const capped = await startApi(testConfig(prefix, { ...env, WAIT_MAX_SECONDS: "1" }));
    try {
      const gaps: number[] = [];
      let answered = 0;
      const client = new InferlineClient({
        baseUrl: capped.url,
        fetch: async (url, init) => {
          if (answered > 0) gaps.push(Date.now() - answered);
          const res = await fetch(url, init);
          answered = Date.now();
          return res;
        },
      });
      const p = await client.predict<{ echo: string }>("tiny", { text: "held in turns", sleep_ms: 4500 });
      assert.equal(p.result.echo, "held in turns");
      assert.ok(gaps.length >= 3, `${gaps.length} polls`);
      // Pausing as for a server that does not hold would add 100, 200, 400 ms, ... between the
      // polls that follow the first.
      const paused = gaps.reduce((a, b) => a + b, 0);
      assert.ok(paused < 100 * (2 ** (gaps.length - 1) - 1), `paused ${gaps.join(", ")} ms between polls`);
    } finally {
      await capped.close();
    }
  });

  it("maxWaitMs bounds the whole call: no Retry-After pause past it, no answer awaited forever", async () => {
    // Real servers that do not help: one turns every request away for longer than the caller
    // waits, one takes requests and never answers.
    let turnedAway = 0;
    let unanswered = 0;
    const full = createServer((_req, res) => {
      turnedAway++;
      res.writeHead(429, { "content-type": "application/json", "retry-after": "12" });
      res.end(JSON.stringify({ error: { code: "queue_full", message: "the queue is full", details: {} } }));
    });
    const silent: Server = createServer(() => void unanswered++);
    const listen = async (server: Server) => {
      server.listen(0, "127.0.0.1");
      await new Promise((r) => server.once("listening", r));
      return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    };
    try {
      const t0 = Date.now();
      await assert.rejects(
        new InferlineClient({ baseUrl: await listen(full) }).predict(
          "tiny",
          { text: "x" },
          { maxWaitMs: 1000 },
        ),
        (e: unknown) => e instanceof InferlineError && e.code === "queue_full" && e.retryAfterSeconds === 12,
      );
      assert.ok(Date.now() - t0 < 6000, "did not wait out a Retry-After longer than maxWaitMs");
      assert.equal(turnedAway, 1);

      const client = new InferlineClient({ baseUrl: await listen(silent), requestTimeoutMs: 200 });
      const hung = client.predict("tiny", { text: "x" }, { wait: 0, maxWaitMs: 1000 });
      let timer: NodeJS.Timeout | undefined;
      const stuck = new Promise((r) => (timer = setTimeout(r, 20_000, "no answer after 20 s")));
      const outcome = await Promise.race([
        hung.then(
          () => "resolved",
          (e: unknown) => e,
        ),
        stuck,
      ]);
      clearTimeout(timer);
      assert.ok(outcome instanceof Error && outcome.name === "TimeoutError", String(outcome));
      assert.ok(unanswered >= 1);
    } finally {
      full.closeAllConnections();
      silent.closeAllConnections();
      full.close();
      silent.close();
    }
  });

  it("maxWaitMs also cuts off a request the server holds without answering", async () => {
    let requests = 0;
    const silent: Server = createServer(() => void requests++);
    silent.listen(0, "127.0.0.1");
    await new Promise((r) => silent.once("listening", r));
    try {
      const baseUrl = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
      // requestTimeoutMs (10 s by default) alone would keep the call four times as long.
      const t0 = Date.now();
      await assert.rejects(
        new InferlineClient({ baseUrl }).predict("tiny", { text: "x" }, { maxWaitMs: 2500 }),
        (e: unknown) => e instanceof Error && e.name === "TimeoutError",
      );
      const took = Date.now() - t0;
      assert.ok(took < 10_000, `gave up after ${took} ms, past maxWaitMs and the request timeout`);
      assert.equal(requests, 1, "no retry started past the deadline");
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it("refuses a wait that is not a whole number of seconds before sending anything", async () => {
    let sent = 0;
    const client = new InferlineClient({
      baseUrl: api.url,
      fetch: async (url, init) => {
        sent++;
        return fetch(url, init);
      },
    });
    for (const wait of [2.5, -1, Number.NaN]) {
      for (const call of [
        () => client.predict("tiny", { text: "x" }, { wait }),
        () => client.submit("tiny", { text: "x" }, { wait }),
        () => client.submitBatch("tiny", [{ text: "x" }], { wait }),
        () => client.result("tiny.0", { wait }),
      ])
        await assert.rejects(
          call(),
          (e: unknown) => e instanceof RangeError && /wait must be/.test(e.message),
        );
    }
    assert.equal(sent, 0);
    // A job view carries its links, typed.
    const view = await client.submit("tiny", { text: "links" }, { wait: 5 });
    assert.equal(view.links?.self, `/api/results/${view.job_id}`);
  });

  it("an aborted signal stops predict at once, mid-request or mid-pause; the job goes on", async () => {
    const client = new InferlineClient({ baseUrl: api.url });
    const controller = new AbortController();
    let jobId = "";
    const watching = new InferlineClient({
      baseUrl: api.url,
      fetch: async (url, init) => {
        const res = await fetch(url, init);
        const href = url instanceof Request ? url.url : url.toString();
        // The submission was answered (202 after its wait): abort while the poll is held.
        if (href.includes("/api/ml/")) {
          jobId = ((await res.clone().json()) as { job_id: string }).job_id;
          setTimeout(() => controller.abort(), 100);
        }
        return res;
      },
    });
    const t0 = Date.now();
    await assert.rejects(
      watching.predict(
        "tiny",
        { text: "not waited for", sleep_ms: 3000 },
        { wait: 1, signal: controller.signal },
      ),
      (e: unknown) => e instanceof Error && e.name === "AbortError",
    );
    assert.ok(Date.now() - t0 < 2500, "stopped before the job ended");
    assert.equal((await client.result(jobId, { wait: 10 })).status, "completed", "the job went on");

    // Turned away with a long Retry-After: the pause ends when the signal aborts.
    const full = createServer((_req, res) => {
      res.writeHead(429, { "content-type": "application/json", "retry-after": "12" });
      res.end(JSON.stringify({ error: { code: "queue_full", message: "the queue is full", details: {} } }));
    }).listen(0, "127.0.0.1");
    try {
      await new Promise((r) => full.once("listening", r));
      const turnedAway = new InferlineClient({
        baseUrl: `http://127.0.0.1:${(full.address() as { port: number }).port}`,
      });
      const paused = new AbortController();
      setTimeout(() => paused.abort(), 200);
      const t1 = Date.now();
      await assert.rejects(
        turnedAway.submit("tiny", { text: "x" }, { signal: paused.signal }),
        (e: unknown) => e instanceof Error && e.name === "AbortError",
      );
      assert.ok(Date.now() - t1 < 6000, "did not wait out the Retry-After");
    } finally {
      full.closeAllConnections();
      full.close();
    }
  });
});
