import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { REDACTION } from "../../src/telemetry/logger.js";
import { testEnv } from "../support/config.js";
import { call, freePort } from "../support/http.js";
import { ROOT, spawnCli, spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, ownRedis, uniquePrefix } from "../support/redis.js";

const KEY = "inf_logtest_5f0c1e2d3a4b5c6d7e8f9a0b1c2d3e4f";
const SESSION_SECRET = "session-secret-that-must-never-be-logged-0123456789";
const COOKIE = "inferline_session=cookie-value-that-must-never-be-logged";

describe("JSON logs: one request id from API to worker, lifecycle events, no secrets", () => {
  const prefix = uniquePrefix("logs");
  let api: Spawned;
  let worker: Spawned;
  let base: string;
  before(async () => {
    const port = await freePort();
    const env = testEnv(prefix, {
      MODELS: "echo",
      JOB_ATTEMPTS: "2",
      LOG_LEVEL: "debug",
      AUTH_DISABLED: "false",
      API_KEYS: `${createHash("sha256").update(KEY).digest("hex")}:admin:logs`,
      SESSION_SECRET,
    });
    api = spawnCli(["api", "--port", String(port)], env);
    await api.waitForLine((l) => l.event === "api_started");
    base = `http://127.0.0.1:${port}`;
    worker = await spawnWorker({ ...env, LOG_LEVEL: "debug" });
  });
  after(async () => {
    await stop(worker);
    await stop(api);
    await cleanupPrefix(prefix);
  });

  const auth = { authorization: `Bearer ${KEY}`, "x-api-key": KEY, cookie: COOKIE, prefer: "wait=10" };

  it("the request id appears in the API's and the worker's lines for the job", async () => {
    const r = await call(
      base,
      "POST",
      "/api/ml/echo",
      { text: "trace me" },
      { ...auth, "x-request-id": "req-obs-1" },
    );
    assert.equal(r.status, 200);
    const id = r.body.job_id as string;
    const queued = await api.waitForLine((l) => l.event === "job_queued" && l.job_id === id);
    assert.equal(queued.request_id, "req-obs-1");
    assert.equal(queued.model, "echo");
    const http = await api.waitForLine((l) => l.event === "http_request" && l.request_id === "req-obs-1");
    assert.equal(http.status, 200);
    assert.equal(typeof http.duration_ms, "number");
    for (const event of ["job_started", "job_completed"]) {
      const line = await worker.waitForLine((l) => l.event === event && l.job_id === id);
      assert.equal(line.request_id, "req-obs-1");
      assert.equal(line.model, "echo");
      assert.match(String(line.worker), /:\d+:/);
      assert.equal(line.attempt, 1);
      assert.equal(typeof line.queue_wait_ms, "number", event);
    }
    const completed = await worker.waitForLine((l) => l.event === "job_completed" && l.job_id === id);
    assert.equal(typeof completed.duration_ms, "number");
  });

  it("job_queued is written when the job is queued, while a Prefer: wait request still waits", async () => {
    let answered = false;
    const pending = call(
      base,
      "POST",
      "/api/ml/echo",
      { text: "slow", sleep_ms: 1500 },
      { ...auth, "x-request-id": "req-obs-queued" },
    ).then((r) => {
      answered = true;
      return r;
    });
    const queued = await api.waitForLine(
      (l) => l.event === "job_queued" && l.request_id === "req-obs-queued",
    );
    assert.equal(answered, false, "job_queued was logged only once the wait had ended");
    const r = await pending;
    assert.equal(r.status, 200);
    assert.equal(queued.job_id, r.body.job_id);
  });

  it("a client that leaves a Prefer: wait request is logged and counted, as 499", async () => {
    const leaving = new AbortController();
    const pending = fetch(`${base}/api/ml/echo`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json", "x-request-id": "req-obs-gone" },
      body: JSON.stringify({ text: "slow", sleep_ms: 2000 }),
      signal: leaving.signal,
    }).catch((err: unknown) => err);
    await api.waitForLine((l) => l.event === "job_queued" && l.request_id === "req-obs-gone");
    leaving.abort();
    assert.ok((await pending) instanceof Error);
    const line = await api.waitForLine((l) => l.event === "http_request" && l.request_id === "req-obs-gone");
    assert.equal(line.status, 499);
    assert.equal(line.route, "/api/ml/:model");
    assert.ok(Number(line.duration_ms) > 0);
    const metrics = await fetch(`${base}/metrics`, { headers: { authorization: auth.authorization } });
    assert.match(
      await metrics.text(),
      /^inferline_http_requests_total\{route="\/api\/ml\/:model",method="POST",status="499"[^}]*\} 1$/m,
    );
    // Answered in full, a request is recorded once, with its own status.
    const done = await call(base, "GET", "/api/models", undefined, {
      ...auth,
      "x-request-id": "req-obs-once",
    });
    assert.equal(done.status, 200);
    await api.waitForLine((l) => l.event === "http_request" && l.request_id === "req-obs-once");
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(
      api.lines.filter((l) => l.request_id === "req-obs-once" && l.event === "http_request").length,
      1,
    );
  });

  it("a failing job logs a retry and then its failure, each with its attempt", async () => {
    const r = await call(
      base,
      "POST",
      "/api/ml/echo",
      { text: "boom", fail: "error" },
      { ...auth, "x-request-id": "req-obs-2" },
    );
    assert.equal(r.body.status, "failed");
    const id = r.body.job_id as string;
    const retrying = await worker.waitForLine((l) => l.event === "job_retrying" && l.job_id === id);
    const failed = await worker.waitForLine((l) => l.event === "job_failed" && l.job_id === id);
    assert.equal(retrying.attempt, 1);
    assert.equal(failed.attempt, 2);
    for (const l of [retrying, failed]) {
      assert.equal(l.request_id, "req-obs-2");
      assert.equal(typeof l.duration_ms, "number");
    }
  });

  it("no key, session secret or cookie appears in any log line", async () => {
    // A request that fails authentication is logged too.
    await call(base, "GET", "/api/stats", undefined, {
      authorization: "Bearer not-the-key-but-still-secret",
    });
    // A key where none belongs: in the query string (refused, but the line is written first).
    await call(base, "GET", `/api/models?api_key=${KEY}`, undefined, auth);
    await new Promise((r) => setTimeout(r, 300));
    const everything = [api.stdout(), api.stderr(), worker.stdout(), worker.stderr()].join("\n");
    assert.ok(api.lines.length > 5 && worker.lines.length > 5);
    for (const secret of [
      KEY,
      SESSION_SECRET,
      "cookie-value-that-must-never-be-logged",
      "not-the-key-but-still-secret",
    ])
      assert.ok(!everything.includes(secret), `log output contains ${secret.slice(0, 12)}…`);
  });

  it("no line names a field twice, shutdown lines included", async () => {
    await stop(worker);
    await stop(api);
    const lines = [api.stdout(), worker.stdout()]
      .join("")
      .split("\n")
      .filter((l) => l.startsWith("{"));
    assert.ok(lines.some((l) => l.includes('"event":"worker_stopped"')));
    // A repeated key is dropped when parsed: the line written again comes out shorter.
    const repeated = lines.filter((l) => JSON.stringify(JSON.parse(l)).length !== l.length);
    assert.deepEqual(repeated, []);
  });
});

describe("worker and supervisor logs: one write per event-loop turn", () => {
  it("writes a turn's 200 lines with a handful of system calls, and the last line before exit", () => {
    // A process of its own: its stdout and its count of write system calls are the test's.
    const logger = pathToFileURL(path.join(ROOT, "dist", "telemetry", "logger.js")).href;
    const script = `
      import { readFileSync } from "node:fs";
      import { createLogger } from ${JSON.stringify(logger)};
      const writes = () => Number(/syscw:\\s*(\\d+)/.exec(readFileSync("/proc/self/io", "utf8"))[1]);
      const log = createLogger({ LOG_LEVEL: "info", NODE_ENV: "test", LOG_PRETTY: false }, { role: "worker" });
      const before = writes();
      for (let i = 0; i < 200; i++) log.info({ event: "line", i }, "a line");
      setImmediate(() => {
        process.stderr.write(String(writes() - before));
        log.info({ event: "last" }, "logged just before exit");
        process.exit(0);
      });
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { event: string });
    assert.equal(lines.filter((l) => l.event === "line").length, 200);
    assert.equal(lines.at(-1)?.event, "last", "the exit flushes what the turn held");
    // One write per line would be 200 (the count includes the stderr write of the count itself).
    assert.ok(Number(r.stderr) < 10, `${r.stderr} write system calls for 200 lines`);
  });
});

describe("a Redis outage in the logs", () => {
  it("each process says once that Redis is gone and once that it is back", async () => {
    const redis = await ownRedis({ aof: false });
    const port = await freePort();
    const env = testEnv(uniquePrefix("outage"), { REDIS_URL: redis.url, MODELS: "echo", LOG_LEVEL: "info" });
    const api = spawnCli(["api", "--port", String(port)], env);
    let worker: Spawned | undefined;
    try {
      await api.waitForLine((l) => l.event === "api_started");
      worker = await spawnWorker(env);
      await redis.stop("SIGKILL");
      // Down long enough for several reconnect attempts, each an error of its own.
      await new Promise((r) => setTimeout(r, 3000));
      await redis.start();
      for (const p of [api, worker]) {
        const back = await p.waitForLine((l) => l.event === "redis_restored", 20_000);
        assert.ok(Number(back.down_ms) >= 2500, JSON.stringify(back));
        const said = p.lines.filter((l) => l.event === "redis_lost" || l.event === "redis_restored");
        assert.deepEqual(
          said.map((l) => [l.event, l.level]),
          [
            ["redis_lost", "warn"],
            ["redis_restored", "info"],
          ],
        );
        const lost = p.lines.findIndex((l) => l.event === "redis_lost");
        const retries = p.lines.slice(lost + 1).filter((l) => l.level === "warn");
        assert.deepEqual(retries, [], "no warning per reconnect attempt");
      }
    } finally {
      if (worker) await stop(worker);
      await stop(api);
      await redis.destroy();
    }
  });
});

describe("processes sharing one standard output", () => {
  it("never interleave their lines, even when the reader falls behind", async () => {
    // As under `inferline start`: every process writes to one pipe. Two write per turn, one
    // buffered (the API's), 20,000 lines each.
    const logger = pathToFileURL(path.join(ROOT, "dist", "telemetry", "logger.js")).href;
    const writer = (role: string, buffered: boolean) => `
      import { createLogger } from ${JSON.stringify(logger)};
      const log = createLogger({ LOG_LEVEL: "info", NODE_ENV: "test", LOG_PRETTY: false }, { role: "${role}" }, { buffered: ${buffered} });
      let i = 0;
      const t = setInterval(() => {
        for (let k = 0; k < 100; k++) log.info({ event: "line", i: i++, pad: "x".repeat(150) }, "a line");
        if (i >= 20000) clearInterval(t);
      }, 1);
    `;
    const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
    const node = (script: string) => `${quote(process.execPath)} --input-type=module -e ${quote(script)}`;
    // A slow reader at the end of a real pipe (a shell's |): the pipe stays full, so writers
    // find only part of the room they need.
    const reader = `process.stdin.on("data", (c) => {
      process.stdout.write(c);
      process.stdin.pause();
      setTimeout(() => process.stdin.resume(), 10);
    });`;
    const writers = [node(writer("a", false)), node(writer("b", false)), node(writer("c", true))];
    const shell = `(${writers.join(" & ")} & wait) | ${node(reader)}`;
    const child = spawn("sh", ["-c", shell], { stdio: ["ignore", "pipe", "inherit"] });
    const chunks: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => chunks.push(c));
    const code = await new Promise((r) => child.on("close", r));
    assert.equal(code, 0);
    const lines = Buffer.concat(chunks).toString("utf8").trim().split("\n");
    const broken = lines.filter((l) => {
      try {
        JSON.parse(l);
        return false;
      } catch {
        return true;
      }
    });
    assert.deepEqual(broken.slice(0, 3), [], `${broken.length} of ${lines.length} lines broken`);
    const count = (role: string) => lines.filter((l) => l.includes(`"role":"${role}"`)).length;
    assert.deepEqual([count("a"), count("b"), count("c")], [20000, 20000, 20000]);
  });
});

describe("log redaction", () => {
  it("blanks secret fields at the top of a line and inside the objects lines carry", () => {
    const lines: string[] = [];
    const log = pino({ redact: REDACTION }, { write: (line: string) => void lines.push(line) });
    const secret = "s3cret-value";
    log.info({
      token: secret,
      REDIS_URL: `redis://:${secret}@host:6379`,
      headers: { authorization: secret },
    });
    for (const holder of ["req", "res", "err", "config", "options"]) {
      log.info({
        [holder]: {
          password: secret,
          apiKey: secret,
          redisUrl: secret,
          SESSION_SECRET: secret,
          headers: { "x-api-key": secret, cookie: secret, "set-cookie": secret },
          kept: "visible",
        },
      });
    }
    assert.equal(lines.length, 6);
    for (const line of lines) assert.ok(!line.includes(secret), `a secret was logged: ${line}`);
    assert.ok(lines.slice(1).every((l) => l.includes('"kept":"visible"')));
  });
});
