import http from "node:http";
import fc from "fast-check";
import { testEnv } from "../support/config.js";
import { sendRaw, type RawAnswer } from "../support/http.js";
import { spawnCli, stop } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import { configEntry, generateKey } from "../../src/security/keys.js";
import { check, newResult, runIfMain, type DrillOptions, type DrillResult } from "./support.js";

interface Hostile {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: Buffer;
  /** Raw bytes on a socket, for what an HTTP client library refuses to send. */
  readonly raw?: string;
}

const enc = (s: string) => encodeURIComponent(s);
const text = fc.string({ unit: "grapheme", maxLength: 40 });
const anyText = fc.oneof(
  text,
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom("", "../../etc/passwd", "%00", "a".repeat(5000), "echo"),
);
const model = fc.oneof(
  fc.constantFrom("echo", "sentiment", "spam", "nope", "ECHO", "echo.", "{echo}"),
  anyText,
);
const nested = (open: string, close: string) =>
  fc.integer({ min: 1, max: 200_000 }).map((n) => open.repeat(n) + "1" + close.repeat(n));

const body: fc.Arbitrary<Buffer | undefined> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? "null")) },
  { weight: 4, arbitrary: fc.record({ text: fc.jsonValue() }).map((v) => Buffer.from(JSON.stringify(v))) },
  {
    weight: 3,
    arbitrary: fc
      .string({ unit: "binary", maxLength: 300 })
      .map((t) => Buffer.from(JSON.stringify({ text: t }))),
  },
  {
    weight: 3,
    arbitrary: fc
      .record(
        {
          text: text,
          sleep_ms: fc.oneof(fc.integer(), fc.double(), fc.string()),
          fail: fc.oneof(fc.constantFrom("error", "invalid", "boom"), fc.jsonValue()),
          fail_attempts: fc.jsonValue(),
        },
        { requiredKeys: [] },
      )
      .map((v) => Buffer.from(JSON.stringify(v))),
  },
  { weight: 2, arbitrary: nested("[", "]").map((t) => Buffer.from(`{"value":${t}}`)) },
  { weight: 2, arbitrary: nested('{"a":', "}").map((t) => Buffer.from(t)) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)) },
  { weight: 2, arbitrary: fc.json().map((t) => Buffer.from(t.slice(0, Math.max(0, t.length - 1)))) },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom(
        '{"text": 1e400}',
        '{"text": "\\ud800"}',
        '{"text": "\\uDFFF\\uD800"}',
        '{"__proto__": {"admin": true}, "text": "x"}',
        '{"constructor": {"prototype": {"x": 1}}}',
        '{"text": "a", "text": 1}',
        "\ufeff{}",
        "[]",
        "null",
        '"text"',
        "",
        "{",
        '{"text": "\u0000"}',
      )
      .map((t) => Buffer.from(t)),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 1_100_000, max: 3_000_000 })
      .map((n) => Buffer.from(`{"text":"${"x".repeat(n)}"}`)),
  },
  { weight: 1, arbitrary: fc.constant(undefined) },
);

const query = fc.oneof(
  fc.constant(""),
  fc
    .record(
      {
        priority: fc.oneof(fc.constantFrom("high", "normal", "low", "HIGH", "urgent", "", "1"), anyText),
        version: fc.oneof(fc.constantFrom("1", "0", "-1", "1e9", "99999999999", "1.0"), anyText),
      },
      { requiredKeys: [] },
    )
    .map(
      (q) =>
        "?" +
        Object.entries(q)
          .map(([k, v]) => `${k}=${enc(v)}`)
          .join("&"),
    ),
  fc.constantFrom(
    "?priority=high&priority=low",
    "?version[]=1",
    "?__proto__[x]=1",
    "?timeout_ms=-5",
    "?timeout_ms=1e99",
  ),
);

const path = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(model, query).map(([m, q]) => `/api/ml/${enc(m)}${q}`) },
  { weight: 2, arbitrary: fc.tuple(model, query).map(([m, q]) => `/api/ml/${enc(m)}/batch${q}`) },
  { weight: 2, arbitrary: anyText.map((id) => `/api/results/${enc(id)}`) },
  { weight: 1, arbitrary: model.map((m) => `/api/models/${enc(m)}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "/api/admin/models/reload",
      "/api/admin/jobs",
      "/api/stats",
      "/dashboard",
      "/dashboard/login",
      "/health",
      "/metrics",
      "/docs",
      "//api//ml//echo",
      "/api/ml/",
      "/api/ml/echo/../../admin",
    ),
  },
  { weight: 1, arbitrary: fc.webPath().map((p) => p || "/") },
);

export function hostileRequests(goodKey: string, otherKey: string): fc.Arbitrary<Hostile> {
  const headers = fc.record(
    {
      "content-type": fc.oneof(
        fc.constantFrom(
          "application/json",
          "application/json; charset=utf-8",
          "application/json; charset=latin1",
          "text/plain",
          "application/x-www-form-urlencoded",
          "multipart/form-data; boundary=x",
          "application/jsonx",
          "*/*",
        ),
        fc.string({ unit: "grapheme-ascii", maxLength: 30 }),
      ),
      prefer: fc.oneof(
        fc.constantFrom(
          "wait=1",
          "wait=0",
          "wait=-1",
          "wait=1e309",
          "wait=abc",
          "wait=999999999",
          "respond-async, wait=1",
          "wait=1.5",
        ),
        fc.string({ unit: "grapheme-ascii", maxLength: 30 }),
      ),
      "idempotency-key": fc.string({ unit: "grapheme-ascii", maxLength: 300 }),
      "x-request-id": fc.string({ unit: "grapheme-ascii", maxLength: 300 }),
      authorization: fc.oneof(
        // Mostly a valid key, so that most requests get past authentication to the parsers.
        { weight: 12, arbitrary: fc.constant(`Bearer ${goodKey}`) },
        fc.constantFrom(
          `Bearer ${goodKey}`,
          `Bearer ${otherKey}`,
          "Bearer ",
          "Bearer",
          "Basic YTpi",
          `bearer ${goodKey}`,
          `Bearer ${goodKey} extra`,
        ),
        fc.string({ unit: "grapheme-ascii", maxLength: 600 }),
      ),
      "x-api-key": fc.oneof(fc.constant(goodKey), fc.string({ unit: "grapheme-ascii", maxLength: 100 })),
      accept: fc.constantFrom("application/json", "text/html", "*/*", "text/event-stream"),
      cookie: fc.oneof(
        fc.constant("inferline_session=abc.123.def"),
        fc.string({ unit: "grapheme-ascii", maxLength: 100 }),
      ),
    },
    { requiredKeys: ["authorization"] },
  );
  const viaHttp = fc.record({
    method: fc.constantFrom(
      "POST",
      "POST",
      "POST",
      "GET",
      "GET",
      "DELETE",
      "PUT",
      "PATCH",
      "OPTIONS",
      "HEAD",
    ),
    path,
    headers,
    body,
  });
  const raw = fc.constantFrom(
    "GET /health/live HTTP/1.1\r\nHost: x\r\nX-Bad: \u0001\u0002\r\n\r\n",
    "GET /health/live HTTP/1.1\r\nHost: x\r\nno-colon-here\r\n\r\n",
    `GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
    "G@T /health/live HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /health/live HTTP/9.9\r\nHost: x\r\n\r\n",
    "POST /api/ml/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "POST /api/ml/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "POST /api/ml/echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
    "GET /%%%% HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /health/live\u0000 HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  return fc.oneof(
    { weight: 19, arbitrary: viaHttp },
    { weight: 1, arbitrary: raw.map((r) => ({ method: "RAW", path: "", headers: {}, raw: r })) },
  );
}

interface Answer {
  status: number;
  body: string;
  contentType: string;
}

function fromRaw(a: RawAnswer): Answer {
  return { status: a.status, body: a.body, contentType: a.headers.get("content-type") ?? "" };
}

function sendHttp(port: number, req: Hostile): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      // What Node's client cannot send at all goes nowhere (the raw cases cover bad bytes).
      if (/^[\t\x20-\x7e]*$/.test(v)) headers[k] = v;
    }
    if (req.body) headers["content-length"] = String(req.body.length);
    const r = http.request(
      { host: "127.0.0.1", port, method: req.method, path: req.path, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString("utf8"),
            contentType: String(res.headers["content-type"] ?? ""),
          }),
        );
        res.on("error", reject);
      },
    );
    r.setTimeout(15_000, () => r.destroy(new Error("timeout")));
    r.on("error", reject);
    r.end(req.body);
  });
}

const STACK = /\bat [^\s]+ \(|\.(ts|js):\d+:\d+|node_modules|\/src\//;

/**
 * Thousands of malformed and hostile requests generated by fast-check. Promises: no 5xx, no
 * crash, every error answer is JSON `{error: {code, message, details}}` without internals.
 */
export async function hostileInput({ short }: DrillOptions): Promise<DrillResult> {
  const r = newResult("10,000 hostile requests");
  const count = 10_000;
  const seed = Number(process.env.DRILL_SEED ?? 20_261_126);
  const prefix = uniquePrefix("drill-hostile");
  const goodKey = generateKey();
  const adminKey = generateKey();
  const env = testEnv(prefix, {
    MODELS: "echo,sentiment",
    LOG_LEVEL: "info",
    AUTH_DISABLED: "false",
    API_KEYS: `${configEntry(goodKey, "predict", "fuzz")},${configEntry(adminKey, "admin", "fuzz-admin")}`,
    WAIT_MAX_SECONDS: "1",
  });
  const api = spawnCli(["api"], env);
  try {
    const started = await api.waitForLine((l) => l.event === "api_started", 30_000);
    const port = Number(new URL(String(started.url)).port);
    const requests = fc.sample(hostileRequests(goodKey, adminKey), { numRuns: count, seed });
    const statuses: Record<string, number> = {};
    const problems: string[] = [];
    let next = 0;
    let cutUploads = 0;
    await Promise.all(
      Array.from({ length: short ? 16 : 32 }, async () => {
        for (let i = next++; i < requests.length; i = next++) {
          const req = requests[i]!;
          let a: Answer;
          try {
            a = req.raw !== undefined ? fromRaw(await sendRaw(port, req.raw)) : await sendHttp(port, req);
          } catch (err) {
            // The server answered (413, 401, 404...) before reading the body and closed, as HTTP
            // allows: Node's client then reports its own write failing instead of the answer.
            // That is the server refusing early, not a missing answer.
            if ((req.body?.length ?? 0) > 0 && /EPIPE|ECONNRESET/.test((err as Error).message)) {
              cutUploads++;
              continue;
            }
            problems.push(
              `#${i} ${req.method} ${req.path.slice(0, 80)}: no answer (${(err as Error).message})`,
            );
            continue;
          }
          statuses[a.status] = (statuses[a.status] ?? 0) + 1;
          r.accepted += a.status === 202 ? 1 : 0;
          // Health reports answer 503 with their own body when the service is unhealthy, which
          // it is here once hostile-but-valid jobs wait with no worker running: an honest answer.
          const healthReport =
            /^\/health(\/(live|ready))?(\?|$)/.test(req.path) &&
            a.status === 503 &&
            (req.method === "HEAD" || /"status"/.test(a.body));
          if (healthReport) continue;
          if (a.status >= 500 || a.status === 0) {
            r.errors5xx++;
            problems.push(
              `#${i} ${req.method} ${req.path.slice(0, 80)}: ${a.status} ${a.body.slice(0, 200)}`,
            );
            continue;
          }
          if (STACK.test(a.body)) problems.push(`#${i}: internals in the answer: ${a.body.slice(0, 200)}`);
          // The dashboard's sign-in answers browsers with its HTML form, by design.
          const page = req.path.startsWith("/dashboard") && a.contentType.startsWith("text/html");
          if (a.status >= 400 && req.method !== "HEAD" && !page) {
            let code: unknown;
            try {
              code = (JSON.parse(a.body) as { error?: { code?: unknown } }).error?.code;
            } catch {
              code = undefined;
            }
            if (typeof code !== "string" || !/json/.test(a.contentType)) {
              problems.push(
                `#${i} ${req.method} ${req.path.slice(0, 80)}: ${a.status} without a JSON error code: ${a.body.slice(0, 120)}`,
              );
            }
          }
        }
      }),
    );
    const alive = api.proc.exitCode === null && api.proc.signalCode === null;
    const live = alive ? (await fetch(`http://127.0.0.1:${port}/health/live`)).status : 0;
    check(r, requests.length === count, `${requests.length} generated requests (seed ${seed})`);
    check(r, r.errors5xx === 0, `0 5xx answers (${JSON.stringify(statuses)})`);
    check(r, alive && live === 200, "the API process is alive and live afterwards");
    check(r, !/unhandled|uncaught/i.test(api.stderr()), "nothing unhandled on stderr");
    check(
      r,
      problems.length === 0,
      `every answer is a JSON error with a code, without internals (${problems.length} not)`,
    );
    for (const p of problems.slice(0, 10)) r.notes.push(p);
    r.notes.push(`${cutUploads} uploads cut off by an early answer before the client finished sending`);
    r.notes.push(
      "accepted = hostile requests that were valid enough to queue a job (202); no worker runs them",
    );
  } finally {
    await stop(api);
    await cleanupPrefix(prefix);
  }
  return r;
}

runIfMain(import.meta, hostileInput);
