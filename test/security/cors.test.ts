import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { testConfig } from "../support/config.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import { testKeys } from "./support.js";

const ORIGIN = "https://app.example.com";
const preflight = (url: string, origin: string) =>
  fetch(`${url}/api/ml/echo`, {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization,content-type",
    },
  });

void describe("CORS", () => {
  const prefix = uniquePrefix("sec-cors");
  const keys = testKeys();
  let closed: ApiHandle;
  let open: ApiHandle;
  before(async () => {
    closed = await startApi(testConfig(prefix, { ...keys.env, MODELS: "echo" }));
    // Written as people copy it from an address bar: a browser's Origin has no slash, no capitals.
    open = await startApi(
      testConfig(prefix, { ...keys.env, MODELS: "echo", CORS_ORIGINS: "https://App.Example.com/" }),
    );
  });
  after(async () => {
    await Promise.all([closed.close(), open.close()]);
    await cleanupPrefix(prefix);
  });

  void it("is off unless CORS_ORIGINS is set", async () => {
    const res = await preflight(closed.url, ORIGIN);
    assert.equal(res.headers.get("access-control-allow-origin"), null);
    const get = await fetch(`${closed.url}/health/live`, { headers: { origin: ORIGIN } });
    assert.equal(get.headers.get("access-control-allow-origin"), null);
  });

  void it("allows exactly the configured origins, preflight without a key", async () => {
    const res = await preflight(open.url, ORIGIN);
    assert.ok(res.status === 204 || res.status === 200, `status ${res.status}`);
    assert.equal(res.headers.get("access-control-allow-origin"), ORIGIN);
    assert.match(res.headers.get("access-control-allow-headers") ?? "", /authorization/);
    const other = await preflight(open.url, "https://evil.example.net");
    assert.notEqual(other.headers.get("access-control-allow-origin"), "https://evil.example.net");
    // A refused request still carries the header, so the browser shows the real error.
    const unauth = await fetch(`${open.url}/api/models`, { headers: { origin: ORIGIN } });
    assert.equal(unauth.status, 401);
    assert.equal(unauth.headers.get("access-control-allow-origin"), ORIGIN);
  });

  void it("lets pages read every rate-limit header the API answers with", async () => {
    const res = await fetch(`${open.url}/api/models`, {
      headers: { origin: ORIGIN, authorization: `Bearer ${keys.predict}` },
    });
    const exposed = (res.headers.get("access-control-expose-headers") ?? "").split(/,\s*/);
    for (const name of [
      "ratelimit-limit",
      "ratelimit-remaining",
      "ratelimit-reset",
      "ratelimit-policy",
      "retry-after",
    ])
      assert.ok(exposed.includes(name), `${name} is not in ${exposed.join(", ")}`);
  });

  void it("CORS_ORIGINS takes origins only, not URLs with a path or wildcards", () => {
    assert.deepEqual(
      testConfig(prefix, { CORS_ORIGINS: "https://a.example:443/, http://localhost:5173" }).CORS_ORIGINS,
      ["https://a.example", "http://localhost:5173"],
    );
    assert.throws(() => testConfig(prefix, { CORS_ORIGINS: "https://a.example/app" }), /CORS_ORIGINS/);
    // Matched exactly, a pattern would match no Origin: refused rather than taken in silence.
    assert.throws(
      () => testConfig(prefix, { CORS_ORIGINS: "http://*.example.com" }),
      /CORS_ORIGINS=.*without wildcards/,
    );
  });

  void it("an OPTIONS request that is no preflight is not answered with a text error", async () => {
    const res = await fetch(`${open.url}/api/ml/echo`, { method: "OPTIONS", headers: { origin: ORIGIN } });
    assert.ok(res.status < 400, `status ${res.status}`);
    assert.equal(res.headers.get("access-control-allow-origin"), ORIGIN);
  });

  void it("an event stream carries the CORS headers too", async () => {
    const auth = { authorization: `Bearer ${keys.predict}`, origin: ORIGIN };
    const job = await fetch(`${open.url}/api/ml/echo`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ text: "streamed across origins" }),
    });
    const { job_id: id } = (await job.json()) as { job_id: string };
    const stop = new AbortController();
    const res = await fetch(`${open.url}/api/results/${id}/events`, { headers: auth, signal: stop.signal });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("access-control-allow-origin"), ORIGIN);
    assert.match(res.headers.get("access-control-expose-headers") ?? "", /x-request-id/);
    stop.abort();
  });
});
