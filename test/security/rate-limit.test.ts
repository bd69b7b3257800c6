import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { testConfig } from "../support/config.js";
import { call } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import { bearer, testKeys } from "./support.js";

const code = (body: Record<string, unknown>) => (body.error as { code?: string } | undefined)?.code;

void describe("rate limits shared by API instances", () => {
  const prefix = uniquePrefix("sec-rate");
  const keys = testKeys();
  const apis: ApiHandle[] = [];
  before(async () => {
    // 5 at once, then one every 20 s: the test never sees a refill.
    const env = {
      ...keys.env,
      MODELS: "echo",
      RATE_LIMIT_KEY_RPS: "0.05",
      RATE_LIMIT_KEY_BURST: "5",
      RATE_LIMIT_IP_RPS: "0.05",
      RATE_LIMIT_IP_BURST: "3",
    };
    apis.push(await startApi(testConfig(prefix, env)), await startApi(testConfig(prefix, env)));
  });
  after(async () => {
    await Promise.all(apis.map((a) => a.close()));
    await cleanupPrefix(prefix);
  });

  void it("a key's burst is spent across both instances, then 429 with Retry-After", async () => {
    const statuses: number[] = [];
    let refused: Awaited<ReturnType<typeof call>> | undefined;
    for (let i = 0; i < 8; i++) {
      const api = apis[i % 2]!;
      const r = await call(api.url, "POST", "/api/ml/echo", { text: `n${i}` }, bearer(keys.predict));
      statuses.push(r.status);
      if (i === 0) {
        assert.equal(r.headers.get("ratelimit-limit"), "5");
        assert.equal(r.headers.get("ratelimit-remaining"), "4");
      }
      if (r.status === 429) refused ??= r;
    }
    assert.deepEqual(statuses, [202, 202, 202, 202, 202, 429, 429, 429]);
    assert.equal(code(refused!.body), "rate_limited");
    const retryAfter = Number(refused!.headers.get("retry-after"));
    assert.ok(retryAfter >= 1 && retryAfter <= 20, `Retry-After ${retryAfter}`);
    assert.equal(refused!.headers.get("ratelimit-remaining"), "0");
    // Another key has its own bucket.
    assert.equal((await call(apis[1]!.url, "GET", "/api/models", undefined, bearer(keys.admin))).status, 200);
  });

  void it("callers without a valid key are limited per address", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      statuses.push(
        (await call(apis[i % 2]!.url, "POST", "/api/ml/echo", { text: "x" }, bearer("wrong"))).status,
      );
    }
    assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
  });

  void it("liveness and readiness probes are never limited", async () => {
    for (let i = 0; i < 10; i++) assert.equal((await call(apis[0]!.url, "GET", "/health/live")).status, 200);
  });
});

void describe("the per-address limit and IPv6", () => {
  // Behind a proxy (TRUST_PROXY) the client's address comes from X-Forwarded-For.
  const inferline = useInferline("sec-rate-v6", {
    env: { ...testKeys().env, TRUST_PROXY: "true", RATE_LIMIT_IP_RPS: "0.05", RATE_LIMIT_IP_BURST: "3" },
  });
  const from = (address: string) =>
    call(inferline.url, "GET", "/api/models", undefined, { "x-forwarded-for": address });

  void it("an IPv6 client cannot take a fresh bucket with each address of its /64", async () => {
    const statuses: number[] = [];
    for (const address of ["::1", "::2", "::abcd:1", ":ffff:ffff:ffff:ffff", "::9"])
      statuses.push((await from(`2001:db8:7:1${address}`)).status);
    assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
    // The same network written out in full is the same caller; another /64 is another.
    assert.equal((await from("2001:0db8:0007:0001:0000:0000:0000:0042")).status, 429);
    assert.equal((await from("2001:db8:7:2::1")).status, 401);
  });

  void it("IPv4 addresses count one by one, also as a dual-stack listener writes them", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await from("198.51.100.7")).status);
    assert.deepEqual(statuses, [401, 401, 401, 429]);
    assert.equal((await from("::ffff:198.51.100.7")).status, 429);
    assert.equal((await from("198.51.100.8")).status, 401);
  });
});
