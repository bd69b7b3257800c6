import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { testConfig } from "../support/config.js";
import { call } from "../support/http.js";
import { useInferline } from "../support/inferline.js";

/** Every client error: its status, its stable code, a message naming the field; nothing queued. */
describe("client errors", () => {
  const inferline = useInferline("errors", { env: { BODY_LIMIT_BYTES: "2048" } });

  const code = (r: { body: Record<string, unknown> }) => (r.body.error as { code: string }).code;
  const message = (r: { body: Record<string, unknown> }) => (r.body.error as { message: string }).message;

  it("unknown model → 404 model_not_found listing the models", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/nope", { text: "x" });
    assert.equal(r.status, 404);
    assert.equal(code(r), "model_not_found");
    assert.ok((r.body.error as { details: { available: string[] } }).details.available.includes("sentiment"));
  });

  it("invalid input → 422 invalid_input naming the field", async () => {
    const cases: [unknown, string][] = [
      [{}, "text is required"],
      [{ text: 42 }, "text must be string"],
      [{ text: "" }, "text must NOT have fewer than 1 characters"],
      [{ text: "ok", extra: 1 }, "extra is not an input of this model"],
      [[1, 2], "(body) must be object"],
    ];
    for (const [body, expected] of cases) {
      const r = await call(inferline.url, "POST", "/api/ml/sentiment", body);
      assert.equal(r.status, 422, JSON.stringify(body));
      assert.equal(code(r), "invalid_input");
      assert.ok(message(r).includes(expected), `${message(r)} should include ${expected}`);
    }
  });

  it("malformed JSON → 400 malformed_json; empty body too", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/sentiment", '{"text": "unterminated');
    assert.equal(r.status, 400);
    assert.equal(code(r), "malformed_json");
    const empty = await call(inferline.url, "POST", "/api/ml/sentiment", "");
    assert.equal(empty.status, 400);
    assert.equal(code(empty), "malformed_json");
  });

  it("malformed JSON is told where it breaks; a poisoning key is named, not called invalid JSON", async () => {
    for (const [body, where] of [
      ['{"text": "x"} trailing', /position 14/],
      ['{"text": "x",}', /position 13/],
    ] as const) {
      const r = await call(inferline.url, "POST", "/api/ml/sentiment", body);
      assert.equal(r.status, 400, body);
      assert.equal(code(r), "malformed_json");
      assert.match(message(r), /^request body is not valid JSON: /);
      assert.match(message(r), where, body);
    }
    for (const body of ['{"text": "x", "__proto__": {"a": 1}}', '{"constructor": {"prototype": {}}}']) {
      const r = await call(inferline.url, "POST", "/api/ml/sentiment", body);
      assert.equal(r.status, 400, body);
      assert.equal(code(r), "malformed_json");
      assert.match(message(r), /"__proto__" key, nor a "constructor" key/, body);
    }
  });

  it("a compressed body → 415 naming Content-Encoding, not malformed JSON", async () => {
    const res = await fetch(`${inferline.url}/api/ml/sentiment`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: gzipSync(JSON.stringify({ text: "compressed" })),
    });
    assert.equal(res.status, 415);
    assert.equal(res.headers.get("accept-encoding"), "identity");
    const body = (await res.json()) as { error: { code: string; message: string; details: unknown } };
    assert.equal(body.error.code, "unsupported_media_type");
    assert.match(body.error.message, /headers\.content-encoding "gzip" is not supported/);
    assert.deepEqual(body.error.details, { field: "headers.content-encoding" });
    // Identity is no coding: the body is read (and, invalid here, refused for its content).
    const identity = await call(
      inferline.url,
      "POST",
      "/api/ml/sentiment",
      { text: 5 },
      {
        "content-encoding": "identity",
      },
    );
    assert.equal(identity.status, 422);
  });

  it("bad query options → 400 invalid_parameter naming them", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/sentiment?priority=urgent", { text: "x" });
    assert.equal(r.status, 400);
    assert.equal(code(r), "invalid_parameter");
    assert.match(message(r), /priority/);
    // The allowed values are spelled out, not alluded to.
    assert.match(message(r), /must be one of "high", "normal", "low"/);
  });

  it("wrong content type → 415 unsupported_media_type", async () => {
    const res = await fetch(`${inferline.url}/api/ml/sentiment`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "text=hello",
    });
    assert.equal(res.status, 415);
    const body = (await res.json()) as { error: { code: string } };
    assert.equal(body.error.code, "unsupported_media_type");
  });

  it("JSON in a charset other than UTF-8 → 415; UTF-8 spelled any way is read", async () => {
    const post = (type: string) =>
      fetch(`${inferline.url}/api/ml/sentiment`, {
        method: "POST",
        headers: { "content-type": type },
        // Not a valid input: read (422), it is not refused for its charset (415), and queues nothing.
        body: JSON.stringify({ txt: "caf\u00e9" }),
      });
    for (const type of ["application/json; charset=latin1", "application/json;charset=utf-16"]) {
      const res = await post(type);
      assert.equal(res.status, 415, type);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, "unsupported_media_type");
    }
    for (const type of [
      "application/json; charset=UTF-8",
      'application/json; charset="utf-8"',
      "application/json",
    ])
      assert.equal((await post(type)).status, 422, type);
  });

  it("a body that claims UTF-8 but is not (Latin-1 bytes) → 400 malformed_json, not altered", async () => {
    const post = (bytes: Buffer, idempotencyKey: string) =>
      fetch(`${inferline.url}/api/ml/sentiment`, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": idempotencyKey },
        body: bytes,
      });
    const key = `latin1-${process.pid}-${Date.now()}`;
    // "café" and "cafê" in Latin-1: decoded with replacement, both would read "caf\ufffd".
    for (const last of [0xe9, 0xea]) {
      const bytes = Buffer.concat([Buffer.from('{"text":"caf'), Buffer.from([last]), Buffer.from('"}')]);
      const res = await post(bytes, key);
      assert.equal(res.status, 400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, "malformed_json");
      assert.match(body.error.message, /not valid UTF-8/);
    }
    // The same text in UTF-8 is read: here an input the model refuses (422), as this suite queues nothing.
    const read = await post(Buffer.from(JSON.stringify({ txt: "caf\u00e9" })), key);
    assert.equal(read.status, 422);
  });

  it("body over the limit → 413 payload_too_large", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/sentiment", { text: "x".repeat(5000) });
    assert.equal(r.status, 413);
    assert.equal(code(r), "payload_too_large");
  });

  it("unknown job → 404 job_not_found; unknown route → 404 route_not_found", async () => {
    for (const id of [
      "nope",
      "sentiment.00000000000000000000000000000000",
      "ghost.00000000000000000000000000000000",
    ]) {
      const r = await call(inferline.url, "GET", `/api/results/${id}`);
      assert.equal(r.status, 404);
      assert.equal(code(r), "job_not_found");
    }
    const r = await call(inferline.url, "GET", "/api/nothing");
    assert.equal(r.status, 404);
    assert.equal(code(r), "route_not_found");
    // An empty path parameter names the parameter, rather than looking up "".
    for (const [method, path, field] of [
      ["GET", "/api/results/", "params.jobId"],
      ["POST", "/api/ml/", "params.model"],
      ["GET", "/api/models/", "params.model"],
    ] as const) {
      const empty = await call(inferline.url, method, path, method === "POST" ? { text: "x" } : undefined);
      assert.equal(empty.status, 400, path);
      assert.equal(code(empty), "invalid_parameter", path);
      assert.match(message(empty), new RegExp(`^${field.replace(".", "\\.")} `), path);
    }
  });

  it("errors carry a request id and never a stack trace", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/sentiment", "{bad");
    assert.ok(r.headers.get("x-request-id"));
    assert.doesNotMatch(JSON.stringify(r.body), /at .*\.(ts|js):\d+/);
  });

  it("rejected requests queue nothing", async () => {
    const { Redis } = await import("ioredis");
    const redis = new Redis(testConfig(inferline.prefix).redisUrl);
    try {
      const keys = await redis.keys(`${inferline.prefix}:*:id`);
      assert.deepEqual(keys, []);
    } finally {
      redis.disconnect();
    }
  });
});
