import assert from "node:assert/strict";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { call, sendRaw } from "../support/http.js";
import { useInferline } from "../support/inferline.js";

/**
 * Sends a POST's head with `Expect: 100-continue` and, if the server invites it (100 Continue),
 * a JSON body of `length` bytes; resolves with everything the server wrote, once it closed the
 * connection or 2 s passed after its final answer began.
 */
function expectContinue(port: number, length: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () =>
      socket.write(
        `POST /api/ml/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${length}\r\nExpect: 100-continue\r\n\r\n`,
      ),
    );
    let data = "";
    let sent = false;
    socket.setEncoding("latin1");
    socket.setTimeout(10_000, () => socket.destroy(new Error("timeout")));
    socket.on("data", (c: string) => {
      data += c;
      if (!sent && data.startsWith("HTTP/1.1 100 Continue\r\n\r\n")) {
        sent = true;
        socket.write(JSON.stringify({ text: "x".repeat(length - 11) }));
      }
      if (/^HTTP\/1\.1 [2-5]\d\d /m.test(data)) setTimeout(() => socket.destroy(), 2000).unref();
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(data));
  });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

void describe("HTTP edges: every answer is the API's, with its headers", () => {
  const inferline = useInferline("http-edges", { env: { AUTH_DISABLED: "true", WAIT_MAX_SECONDS: "1" } });

  void it("a caller's request id is used only when it is a plain token of at most 128 characters", async () => {
    for (const given of ["hello world <script>", "x".repeat(129), "a;b"]) {
      const r = await call(inferline.url, "GET", "/api/models", undefined, { "x-request-id": given });
      assert.match(r.headers.get("x-request-id") ?? "", UUID, `"${given.slice(0, 20)}" replaced`);
    }
    const kept = await call(inferline.url, "GET", "/api/models", undefined, {
      "x-request-id": "trace-1.a:b",
    });
    assert.equal(kept.headers.get("x-request-id"), "trace-1.a:b");
  });

  void it("a URL the router rejects gets a JSON error with a request id and the security headers", async () => {
    for (const [path, status, code] of [
      ["/api/results/%ZZ", 400, "malformed_url"],
      [`/api/results/${"x".repeat(200)}`, 414, "uri_too_long"],
    ] as const) {
      const r = await call(inferline.url, "GET", path);
      assert.equal(r.status, status, path);
      assert.equal((r.body.error as { code: string }).code, code);
      assert.match(r.headers.get("x-request-id") ?? "", UUID, `${path}: request id`);
      assert.equal(r.headers.get("x-content-type-options"), "nosniff", `${path}: security headers`);
      assert.ok(r.headers.get("content-security-policy"), `${path}: CSP`);
    }
  });

  void it("answers, errors and submissions alike carry the whole set of security headers", async () => {
    const expected = {
      "content-security-policy":
        "default-src 'self';script-src 'self';style-src 'self' 'unsafe-inline';img-src 'self' data:;connect-src 'self';font-src 'self';object-src 'none';base-uri 'self';form-action 'self';frame-ancestors 'none'",
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-resource-policy": "same-origin",
      "referrer-policy": "no-referrer",
      "strict-transport-security": "max-age=15552000",
      "x-content-type-options": "nosniff",
      "x-frame-options": "DENY",
      "x-xss-protection": "0",
    };
    const answers = [
      await call(inferline.url, "GET", "/api/models"),
      await call(inferline.url, "GET", "/api/models/no-such-model"),
      await call(inferline.url, "POST", "/api/ml/echo", { text: "headers" }),
    ];
    assert.deepEqual(
      answers.map((r) => r.status),
      [200, 404, 202],
    );
    for (const r of answers) {
      for (const [name, value] of Object.entries(expected))
        assert.equal(r.headers.get(name), value, `${r.status}: ${name}`);
      assert.equal(r.headers.get("x-powered-by"), null);
    }
  });

  void it("a path the docs' file server refuses is the client's error, not a 500", async () => {
    const port = Number(new URL(inferline.url).port);
    for (const [path, status, code] of [
      ["/docs/static/../../package.json", 404, "route_not_found"],
      ["/docs/static/..%5c..%5cpackage.json", 404, "route_not_found"],
      ["/docs/static/a%00b", 400, "bad_request"],
    ] as const) {
      const r = await sendRaw(port, `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      assert.equal(r.status, status, path);
      const body = JSON.parse(r.body) as { error: { code: string; message: string } };
      assert.equal(body.error.code, code, path);
      assert.ok(body.error.message.includes(path.split("?")[0]!), body.error.message);
    }
  });

  void it("an HTTP/1.1 request without Host gets a JSON 400 naming the header", async () => {
    const port = Number(new URL(inferline.url).port);
    const r = await sendRaw(port, "GET /api/models HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert.equal(r.status, 400);
    const body = JSON.parse(r.body) as { error: { code: string; message: string } };
    assert.equal(body.error.code, "invalid_parameter");
    assert.match(body.error.message, /headers\.host/);
    assert.match(r.headers.get("x-request-id") ?? "", UUID);
  });

  void it("requests Node's parser refuses get the catalog's JSON error too", async () => {
    const port = Number(new URL(inferline.url).port);
    const cases: [string, number, string][] = [
      [
        `GET /api/models HTTP/1.1\r\nHost: localhost\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
        431,
        "headers_too_large",
      ],
      ["GET /api/models HTTP/1.1\r\nHost: localhost\r\nBad Header: 1\r\n\r\n", 400, "malformed_request"],
      // Node counts the request line with the headers; a huge query string is a URL too long.
      [`GET /api/models?x=${"a".repeat(17_000)} HTTP/1.1\r\nHost: localhost\r\n\r\n`, 414, "uri_too_long"],
    ];
    for (const [raw, status, code] of cases) {
      const r = await sendRaw(port, raw);
      assert.equal(r.status, status, code);
      const body = JSON.parse(r.body) as { error: { code: string; message: string } };
      assert.equal(body.error.code, code);
      assert.match(body.error.message, /could not be read/);
    }
  });

  void it("CONNECT (a proxy's method) gets a JSON 405 with Allow, not a dropped connection", async () => {
    const port = Number(new URL(inferline.url).port);
    const r = await sendRaw(port, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    assert.equal(r.status, 405);
    const body = JSON.parse(r.body) as {
      error: { code: string; message: string; details: { allowed: string[] } };
    };
    assert.equal(body.error.code, "method_not_allowed");
    assert.match(body.error.message, /^CONNECT is not allowed/);
    assert.equal(r.headers.get("allow"), body.error.details.allowed.join(", "));
    // The methods the routes take, as registered.
    for (const m of ["GET", "HEAD", "POST", "DELETE", "OPTIONS"])
      assert.ok(body.error.details.allowed.includes(m), m);
    assert.match(r.headers.get("x-request-id") ?? "", UUID);
    // The server goes on answering.
    assert.equal((await call(inferline.url, "GET", "/health/live")).status, 200);
  });

  void it("Prefer: wait with many digits is capped; a fraction is not a wait and is ignored", async () => {
    const big = await call(
      inferline.url,
      "POST",
      "/api/ml/echo",
      { text: "x" },
      { prefer: "wait=99999999999" },
    );
    assert.equal(big.status, 202);
    assert.equal(big.headers.get("preference-applied"), "wait=1");
    const fraction = await call(inferline.url, "POST", "/api/ml/echo", { text: "y" }, { prefer: "wait=1.5" });
    assert.equal(fraction.status, 202);
    assert.equal(fraction.headers.get("preference-applied"), null);
  });

  void it("Prefer is read as RFC 7240 lists it: quoted text is no preference, only the first wait counts", async () => {
    for (const [prefer, applied] of [
      ['foo="a,wait=1"', null],
      ["wait=x, wait=1", null],
      ['respond-async; note="a,b", WAIT = 1', "wait=1"],
    ] as const) {
      const r = await call(inferline.url, "POST", "/api/ml/echo", { text: prefer }, { prefer });
      assert.equal(r.headers.get("preference-applied"), applied, prefer);
    }
  });

  void it("an unknown option is named, and a form over its own limit is told that limit", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/echo?foo=1", { text: "x" });
    assert.equal(r.status, 400);
    assert.equal((r.body.error as { message: string }).message, "querystring.foo is not allowed");
    const login = await fetch(`${inferline.url}/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `key=${"k".repeat(5000)}`,
    });
    assert.equal(login.status, 413);
    const body = (await login.json()) as { error: { message: string } };
    assert.match(body.error.message, /4096 bytes/);
  });

  void it("a JSON body is taken as sent: a string is no array; the query string still converts", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/echo/batch", { inputs: "x" });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal((r.body.error as { message: string }).message, "body.inputs must be array");
    const q = await call(inferline.url, "POST", "/api/ml/echo?timeout_ms=60000&priority=high", { text: "q" });
    assert.equal(q.status, 202, JSON.stringify(q.body));
    assert.equal(q.body.priority, "high");
    // Integers only in decimal digits: Number() would read each of these as some other value.
    for (const given of ["0x10", "0b11", "1e3", "%201000", "+5", "5.0"]) {
      const bad = await call(inferline.url, "POST", `/api/ml/echo?timeout_ms=${given}`, { text: "q" });
      assert.equal(bad.status, 400, given);
      assert.equal(
        (bad.body.error as { message: string }).message,
        "querystring.timeout_ms must be an integer in decimal digits",
        given,
      );
    }
  });

  void it("dashboard asset names are looked up among the assets only", async () => {
    for (const name of ["constructor", "__proto__", "toString"]) {
      const r = await call(inferline.url, "GET", `/dashboard/assets/${name}`);
      assert.equal(r.status, 404, name);
    }
  });

  void it("HEAD on an event stream is not a route (it could never write)", async () => {
    const job = await call(inferline.url, "POST", "/api/ml/echo", { text: "head" });
    const r = await fetch(`${inferline.url}/api/results/${String(job.body.job_id)}/events`, {
      method: "HEAD",
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(r.status, 405);
    assert.equal(r.headers.get("allow"), "GET, OPTIONS");
  });

  void it("a method a known path does not take is 405 with Allow; OPTIONS lists them; unknown paths stay 404", async () => {
    for (const [method, path, allow] of [
      ["GET", "/api/ml/echo", "POST, OPTIONS"],
      ["PUT", "/api/ml/echo/batch", "POST, OPTIONS"],
      ["POST", "/api/results/echo.00000000000000000000000000000000", "GET, HEAD, DELETE, OPTIONS"],
      ["DELETE", "/api/models?x=1", "GET, HEAD, OPTIONS"],
    ] as const) {
      const r = await call(inferline.url, method, path);
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.headers.get("allow"), allow, `${method} ${path}`);
      const error = r.body.error as { code: string; message: string; details: { allowed: string[] } };
      assert.equal(error.code, "method_not_allowed");
      assert.match(error.message, new RegExp(`^${method} is not allowed on ${path.split("?")[0]}`));
      assert.deepEqual(error.details.allowed, allow.split(", "));
      assert.match(r.headers.get("x-request-id") ?? "", UUID);
    }
    const options = await fetch(`${inferline.url}/api/ml/echo`, { method: "OPTIONS" });
    assert.equal(options.status, 204);
    assert.equal(options.headers.get("allow"), "POST, OPTIONS");
    for (const method of ["GET", "OPTIONS"]) {
      const r = await call(inferline.url, method, "/api/nothing");
      assert.equal(r.status, 404, method);
      assert.equal((r.body.error as { code: string }).code, "route_not_found");
    }
  });

  void it("Expect: 100-continue invites a body within the limit, and refuses a larger one without inviting it", async () => {
    const port = Number(new URL(inferline.url).port);
    const small = await expectContinue(port, 40);
    assert.match(small, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 202 /, small.slice(0, 200));
    const large = await expectContinue(port, 2 * 1024 * 1024);
    // The final answer first: the client never sends the 2 MiB, and the connection is closed.
    assert.match(large, /^HTTP\/1\.1 413 /, large.slice(0, 200));
    assert.ok(!large.includes("100 Continue"), large.slice(0, 200));
    assert.match(large, /"code":"payload_too_large"/);
    assert.match(large, /\r\nconnection: close\r\n/i);
  });
});
