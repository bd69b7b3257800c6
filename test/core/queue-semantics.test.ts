import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Redis } from "ioredis";
import { testConfig, testEnv } from "../support/config.js";
import { call, eventually } from "../support/http.js";
import { useInferline, type Inferline } from "../support/inferline.js";
import { spawnWorker, stop } from "../support/processes.js";

describe("queue semantics", () => {
  const inferline = useInferline("queue");

  it("2,000 concurrent submits get 2,000 distinct job ids", async () => {
    const replies = await Promise.all(
      Array.from({ length: 2000 }, (_, i) => call(inferline.url, "POST", "/api/ml/echo", { value: i })),
    );
    assert.ok(replies.every((r) => r.status === 202));
    const ids = new Set(replies.map((r) => r.body.job_id as string));
    assert.equal(ids.size, 2000);
    // Each id holds the input it was given: no two submits shared a job.
    const sample = replies.filter((_, i) => i % 400 === 0);
    for (const r of sample) {
      const g = await call(inferline.url, "GET", `/api/results/${String(r.body.job_id)}`);
      assert.equal(g.body.status, "queued");
    }
    // Not left for later tests' workers.
    const { Redis } = await import("ioredis");
    const redis = new Redis(testConfig(inferline.prefix).redisUrl);
    await redis.del(`${inferline.prefix}:{echo}:prioritized`);
    redis.disconnect();
  });

  it("cancels a queued job; canceling it again answers 200 with it, as the first cancel did; an unknown job is 404", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/sentiment", { text: "cancel me" });
    const id = r.body.job_id as string;
    const d = await call(inferline.url, "DELETE", `/api/results/${id}`);
    assert.equal(d.status, 200);
    assert.equal(d.body.status, "canceled");
    const g = await call(inferline.url, "GET", `/api/results/${id}`);
    assert.equal(g.status, 200);
    assert.equal(g.body.status, "canceled");
    const again = await call(inferline.url, "DELETE", `/api/results/${id}`);
    assert.equal(again.status, 200);
    assert.equal(again.body.status, "canceled");
    assert.equal(again.body.job_id, id);
    const missing = await call(
      inferline.url,
      "DELETE",
      "/api/results/sentiment.00000000000000000000000000000000",
    );
    assert.equal(missing.status, 404);
  });

  it("runs high-priority jobs queued behind low ones first, and a canceled job never runs", async () => {
    const lows = [];
    for (let i = 0; i < 4; i++)
      lows.push(await call(inferline.url, "POST", "/api/ml/sentiment?priority=low", { text: `low ${i}` }));
    const canceled = await call(inferline.url, "POST", "/api/ml/sentiment?priority=high", { text: "never" });
    await call(inferline.url, "DELETE", `/api/results/${String(canceled.body.job_id)}`);
    const highs = [];
    for (let i = 0; i < 4; i++)
      highs.push(await call(inferline.url, "POST", "/api/ml/sentiment?priority=high", { text: `high ${i}` }));
    const normal = await call(inferline.url, "POST", "/api/ml/sentiment", { text: "normal" });

    const worker = await spawnWorker(testEnv(inferline.prefix), [
      "--models",
      "sentiment",
      "--concurrency",
      "1",
    ]);
    try {
      const order: string[] = [];
      for (const r of [...lows, ...highs, normal]) {
        const g = await call(inferline.url, "GET", `/api/results/${String(r.body.job_id)}`, undefined, {
          prefer: "wait=20",
        });
        assert.equal(g.body.status, "completed");
        order.push(g.body.finished_at as string);
      }
      const started = worker.lines.filter((l) => l.event === "job_started").map((l) => l.job_id);
      const idx = (r: { body: Record<string, unknown> }) => started.indexOf(r.body.job_id);
      assert.equal(started.length, 9);
      assert.ok(!started.includes(canceled.body.job_id), "canceled job never ran");
      for (const h of highs) for (const l of lows) assert.ok(idx(h) < idx(l), "high before low");
      for (const l of lows) assert.ok(idx(normal) < idx(l), "normal before low");
      for (const h of highs) assert.ok(idx(h) < idx(normal), "high before normal");
      // FIFO within a priority.
      assert.deepEqual(
        highs.map(idx),
        [...highs.map(idx)].sort((a, b) => a - b),
      );
    } finally {
      await stop(worker);
    }
  });

  it("a queued job's view says how many jobs run before it, by priority then arrival", async () => {
    const submit = async (priority: string, text: string) =>
      String((await call(inferline.url, "POST", `/api/ml/spam?priority=${priority}`, { text })).body.job_id);
    const low = await submit("low", "position low");
    const first = await submit("normal", "position first");
    const second = await submit("normal", "position second");
    const high = await submit("high", "position high");
    const positions = async () => {
      const views = await Promise.all(
        [high, first, second, low].map((id) => call(inferline.url, "GET", `/api/results/${id}`)),
      );
      return views.map((v) => v.body.position);
    };
    assert.deepEqual(await positions(), [0, 1, 2, 3]);
    // A job leaving the queue moves the ones behind it up.
    assert.equal((await call(inferline.url, "DELETE", `/api/results/${high}`)).status, 200);
    const [canceled, ...rest] = await positions();
    assert.equal(canceled, undefined, "a canceled job has no position");
    assert.deepEqual(rest, [0, 1, 2]);
    for (const id of [first, second, low]) await call(inferline.url, "DELETE", `/api/results/${id}`);
  });

  it("a running job cannot be canceled (409)", async () => {
    const worker = await spawnWorker(testEnv(inferline.prefix), ["--models", "echo"]);
    try {
      const r = await call(inferline.url, "POST", "/api/ml/echo", { text: "busy", sleep_ms: 1500 });
      const id = r.body.job_id as string;
      for (let i = 0; i < 100; i++) {
        if ((await call(inferline.url, "GET", `/api/results/${id}`)).body.status === "active") break;
        await new Promise((res) => setTimeout(res, 20));
      }
      const d = await call(inferline.url, "DELETE", `/api/results/${id}`);
      assert.equal(d.status, 409);
      assert.equal((d.body.error as { code: string }).code, "job_not_cancelable");
      const g = await call(inferline.url, "GET", `/api/results/${id}`, undefined, { prefer: "wait=10" });
      assert.equal(g.body.status, "completed");
    } finally {
      await stop(worker);
    }
  });

  it("a cancel racing a worker either stops the job before it runs or is refused", async () => {
    const worker = await spawnWorker(testEnv(inferline.prefix), ["--models", "echo"]);
    try {
      const submitted = await Promise.all(
        Array.from({ length: 300 }, (_, i) =>
          call(inferline.url, "POST", "/api/ml/echo", { text: "race", value: i }),
        ),
      );
      assert.deepEqual(
        submitted.filter((r) => r.status !== 202).map((r) => r.body),
        [],
      );
      const ids = submitted.map((r) => r.body.job_id as string);
      const cancels = await Promise.all(ids.map((id) => call(inferline.url, "DELETE", `/api/results/${id}`)));
      const finals = await Promise.all(
        ids.map((id) => call(inferline.url, "GET", `/api/results/${id}`, undefined, { prefer: "wait=20" })),
      );
      await new Promise((res) => setTimeout(res, 300));
      const started = new Set(worker.lines.filter((l) => l.event === "job_started").map((l) => l.job_id));
      ids.forEach((id, i) => {
        const cancel = cancels[i]!;
        if (cancel.status === 200) {
          assert.ok(!started.has(id), `${id} was canceled, yet it ran`);
          assert.equal(finals[i]!.body.status, "canceled", id);
        } else {
          assert.equal(cancel.status, 409, JSON.stringify(cancel.body));
          assert.equal(finals[i]!.body.status, "completed", id);
        }
      });
    } finally {
      await stop(worker);
    }
  });

  it("a job other requests joined cannot be canceled by one of them", async () => {
    const body = { text: "wanted by two clients" };
    const a = await call(inferline.url, "POST", "/api/ml/sentiment", body);
    const b = await call(inferline.url, "POST", "/api/ml/sentiment", body);
    assert.equal(b.body.job_id, a.body.job_id, "the second request joined the first one's job");
    const d = await call(inferline.url, "DELETE", `/api/results/${String(a.body.job_id)}`);
    assert.equal(d.status, 409, JSON.stringify(d.body));
    const error = d.body.error as { code: string; message: string };
    assert.equal(error.code, "job_not_cancelable");
    assert.match(error.message, /share/);
    const g = await call(inferline.url, "GET", `/api/results/${String(a.body.job_id)}`);
    assert.equal(g.body.status, "queued");
  });

  it("equal inputs of one batch share their job with no one else: the batch's caller can cancel it", async () => {
    const input = { text: "twice in one batch" };
    const batch = await call(inferline.url, "POST", "/api/ml/sentiment/batch", { inputs: [input, input] });
    assert.equal(batch.status, 202, JSON.stringify(batch.body));
    const [first, second] = batch.body.jobs as { job_id: string }[];
    assert.equal(second?.job_id, first?.job_id, "the second input joined the first one's job");
    const d = await call(inferline.url, "DELETE", `/api/results/${first!.job_id}`);
    assert.equal(d.status, 200, JSON.stringify(d.body));
    assert.equal(d.body.status, "canceled");
    // Another request joining afterwards still makes it shared.
    const again = await call(inferline.url, "POST", "/api/ml/sentiment/batch", { inputs: [input, input] });
    const id = (again.body.jobs as { job_id: string }[])[0]!.job_id;
    assert.notEqual(id, first!.job_id);
    await call(inferline.url, "POST", "/api/ml/sentiment", input);
    assert.equal((await call(inferline.url, "DELETE", `/api/results/${id}`)).status, 409);
  });

  it("a request with a deadline runs its own job: it neither joins nor is joined", async () => {
    const body = { text: "one with a deadline, one without" };
    const plain = await call(inferline.url, "POST", "/api/ml/sentiment", body);
    const timed = await call(inferline.url, "POST", "/api/ml/sentiment?timeout_ms=60000", body);
    assert.notEqual(timed.body.job_id, plain.body.job_id);
    const other = { text: "deadline first this time" };
    const first = await call(inferline.url, "POST", "/api/ml/sentiment?timeout_ms=60000", other);
    const second = await call(inferline.url, "POST", "/api/ml/sentiment", other);
    assert.notEqual(second.body.job_id, first.body.job_id);
    // Unshared, the job with the deadline can be canceled.
    const d = await call(inferline.url, "DELETE", `/api/results/${String(first.body.job_id)}`);
    assert.equal(d.status, 200);
  });
});

describe("a job waiting to retry has run", () => {
  // Long enough a backoff to look at the job between its attempts.
  const env = { JOB_BACKOFF_MS: "2500", JOB_BACKOFF_JITTER: "0" };
  const inferline = useInferline("retry-wait", { env, worker: ["--models", "echo"] });

  it("it cannot be canceled, says when it runs next, and its deadline does not expire it", async () => {
    const before = Date.now();
    const r = await call(inferline.url, "POST", "/api/ml/echo?timeout_ms=1000", {
      text: "fails once",
      fail: "error",
      fail_attempts: 1,
      sleep_ms: 800,
    });
    const id = r.body.job_id as string;
    let view: Record<string, unknown> = {};
    for (let i = 0; i < 200 && !(view.status === "queued" && view.attempts === 1); i++) {
      view = (await call(inferline.url, "GET", `/api/results/${id}`)).body;
      await new Promise((res) => setTimeout(res, 20));
    }
    assert.equal(view.status, "queued", JSON.stringify(view));
    assert.equal(view.attempts, 1);
    // Next attempt: the backoff after the failed attempt ended, not after the job was created.
    const next = Date.parse(view.next_attempt_at as string);
    // The attempt took 800 ms before it failed.
    const created = Date.parse(view.created_at as string);
    assert.ok(next >= created + 800 + 2500 - 5, `next_attempt_at ${String(view.next_attempt_at)}`);
    assert.ok(next <= Date.now() + 2500 + 5, `next_attempt_at ${String(view.next_attempt_at)}`);
    assert.ok(created >= before - 5);
    const d = await call(inferline.url, "DELETE", `/api/results/${id}`);
    assert.equal(d.status, 409, JSON.stringify(d.body));
    assert.match((d.body.error as { message: string }).message, /retry/);
    // Past its deadline now, it still gets its retry.
    await new Promise((res) => setTimeout(res, 1100));
    assert.equal((await call(inferline.url, "GET", `/api/results/${id}`)).body.status, "queued");
    const done = await call(inferline.url, "GET", `/api/results/${id}`, undefined, { prefer: "wait=10" });
    assert.equal(done.body.status, "completed", JSON.stringify(done.body));
    assert.equal(done.body.attempts, 2);
  });
});

/**
 * Submits `n` echo jobs that fail their first two attempts, and returns, per job, the retry
 * delays BullMQ scheduled after attempts 1 and 2 (the job's `delay` field, set with its attempt
 * count `atm` in one script, reset to 0 when the job is due) and the waits the worker's log shows
 * between a failed attempt (`job_retrying`) and the next start (`job_started`).
 */
async function failTwice(
  inferline: Inferline,
  n: number,
): Promise<{ scheduled: [number, number]; waited: [number, number] }[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await call(inferline.url, "POST", "/api/ml/echo", {
      text: `fails twice ${i}`,
      fail: "error",
      fail_attempts: 2,
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    ids.push(r.body.job_id as string);
  }
  const redis = new Redis(testConfig(inferline.prefix).redisUrl);
  const delays = ids.map(() => new Map<number, number>());
  try {
    // Each backoff lasts hundreds of ms: polling every 10 ms reads both.
    await eventually(
      async () => {
        for (const [i, id] of ids.entries()) {
          const [atm, delay] = await redis.hmget(`${inferline.prefix}:{echo}:${id}`, "atm", "delay");
          const attempts = Number(atm ?? 0);
          // Read while the job waits out its backoff: once the job is due, BullMQ sets delay to 0.
          if ((attempts === 1 || attempts === 2) && !delays[i]!.has(attempts) && Number(delay) > 0)
            delays[i]!.set(attempts, Number(delay));
        }
        return delays.every((d) => d.size === 2);
      },
      30_000,
      10,
    );
  } finally {
    redis.disconnect();
  }
  const time = (event: string, id: string, attempt: number) => {
    const line = inferline.worker.lines.find(
      (l) => l.event === event && l.job_id === id && l.attempt === attempt,
    );
    assert.ok(line, `${event} of ${id}, attempt ${attempt}`);
    return Date.parse(line.time as string);
  };
  return Promise.all(
    ids.map(async (id, i) => {
      const done = await call(inferline.url, "GET", `/api/results/${id}`, undefined, { prefer: "wait=20" });
      assert.equal(done.body.status, "completed", JSON.stringify(done.body));
      assert.equal(done.body.attempts, 3);
      return {
        scheduled: [delays[i]!.get(1)!, delays[i]!.get(2)!] as [number, number],
        waited: [
          time("job_started", id, 2) - time("job_retrying", id, 1),
          time("job_started", id, 3) - time("job_retrying", id, 2),
        ] as [number, number],
      };
    }),
  );
}

describe("retry backoff: exponential, with jitter", () => {
  // BullMQ's exponential backoff with jitter j: the delay after attempt k is drawn from
  // [2^(k-1)·D·(1-j), 2^(k-1)·D), D = JOB_BACKOFF_MS; without jitter it is exactly 2^(k-1)·D.
  const D = 1000;
  const jitter = 0.2;
  const inferline = useInferline("retry-backoff", {
    env: { JOB_ATTEMPTS: "3", JOB_BACKOFF_MS: String(D), JOB_BACKOFF_JITTER: String(jitter) },
    worker: ["--models", "echo"],
  });

  it("the second retry waits about twice the first, each within its jitter band", async () => {
    const jobs = await failTwice(inferline, 3);
    for (const { scheduled, waited } of jobs) {
      const [first, second] = scheduled;
      const ctx = `scheduled ${first} then ${second} ms`;
      // The bands do not overlap: [800, 1000) then [1600, 2000). A flat backoff stays in the first.
      assert.ok(first >= D * (1 - jitter) && first < D, ctx);
      assert.ok(second >= 2 * D * (1 - jitter) && second < 2 * D, ctx);
      const ratio = second / first;
      assert.ok(ratio > 2 * (1 - jitter) && ratio < 2 / (1 - jitter), `ratio ${ratio}: ${ctx}`);
      // And the worker really waited them out before the next attempt (only a lower bound: how
      // much longer it took is the machine's speed, not the backoff's).
      assert.ok(waited[0] >= first - 5 && waited[1] >= second - 5, `waited ${waited.join(", ")} ms: ${ctx}`);
    }
    // Randomised: three jobs drawing the same two delays (1 in 200 and 1 in 400 values) would
    // mean the jitter is not random (chance about 1e-10).
    const distinct = (k: 0 | 1) => new Set(jobs.map((j) => j.scheduled[k])).size;
    assert.ok(
      distinct(0) > 1 || distinct(1) > 1,
      `every job got the same delays: ${JSON.stringify(jobs.map((j) => j.scheduled))}`,
    );
  });
});

describe("retry backoff without jitter", () => {
  const D = 1000;
  const inferline = useInferline("retry-nojitter", {
    env: { JOB_ATTEMPTS: "3", JOB_BACKOFF_MS: String(D), JOB_BACKOFF_JITTER: "0" },
    worker: ["--models", "echo"],
  });

  it("JOB_BACKOFF_JITTER=0: exactly D then 2·D, the same for every job", async () => {
    const jobs = await failTwice(inferline, 3);
    for (const { scheduled, waited } of jobs) {
      assert.deepEqual(scheduled, [D, 2 * D]);
      assert.ok(waited[0] >= D - 5 && waited[1] >= 2 * D - 5, `waited ${waited.join(", ")} ms`);
    }
  });
});

describe("finished jobs past their retention", () => {
  const inferline = useInferline("retention", {
    env: { RESULT_RETENTION_SECONDS: "1", FAILED_RETENTION_SECONDS: "1" },
    worker: ["--models", "echo"],
  });

  it("read as gone, and leave Redis though no later job finishes", async () => {
    const wait = { prefer: "wait=10" };
    const done = await call(inferline.url, "POST", "/api/ml/echo", { text: "kept 1 s" }, wait);
    assert.equal(done.body.status, "completed", JSON.stringify(done.body));
    const failed = await call(inferline.url, "POST", "/api/ml/echo", { text: "x", fail: "invalid" }, wait);
    assert.equal(failed.body.status, "failed", JSON.stringify(failed.body));
    const keyed = { ...wait, "idempotency-key": "retention replay" };
    const first = await call(inferline.url, "POST", "/api/ml/echo", { text: "replayed" }, keyed);
    assert.equal(first.body.status, "completed", JSON.stringify(first.body));
    // Nothing else of the queue finishes from now on.
    await new Promise((r) => setTimeout(r, 1500));
    for (const id of [done.body.job_id, failed.body.job_id]) {
      const g = await call(inferline.url, "GET", `/api/results/${String(id)}`);
      assert.equal(g.status, 404, `${String(id)}: ${JSON.stringify(g.body)}`);
    }
    // The key outlives the job: its replay runs the job again, under the id the key holds.
    const replay = await call(inferline.url, "POST", "/api/ml/echo", { text: "replayed" }, keyed);
    assert.equal(replay.body.job_id, first.body.job_id);
    assert.equal(replay.body.status, "completed", JSON.stringify(replay.body));
    assert.notEqual(replay.body.finished_at, first.body.finished_at, "ran again");
    const { Redis } = await import("ioredis");
    const redis = new Redis(testConfig(inferline.prefix).redisUrl);
    try {
      await eventually(async () => {
        const left = await Promise.all(
          [done.body.job_id, failed.body.job_id].map((id) =>
            redis.exists(`${inferline.prefix}:{echo}:${String(id)}`),
          ),
        );
        return left.every((n) => n === 0);
      }, 10_000);
    } finally {
      redis.disconnect();
    }
  });
});
