import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { request } from "undici";
import { accessFor } from "../../src/http/auth.js";
import { hashKey, KeyRing } from "../../src/security/keys.js";
import { Redis } from "ioredis";
import { RedisUnavailableError } from "../../src/errors/catalog.js";
import { SessionStore } from "../../src/security/sessions.js";
import { testConfig } from "../support/config.js";
import { call, freePort } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { spawnCli } from "../support/processes.js";
import { cleanupPrefix, REDIS_URL, uniquePrefix } from "../support/redis.js";
import { bearer, testKeys } from "./support.js";

const code = (body: Record<string, unknown>) => (body.error as { code?: string } | undefined)?.code;

void describe("API keys", () => {
  const keys = testKeys();
  const inferline = useInferline("sec-auth", {
    env: { ...keys.env, MODELS: "echo", MODEL_RELOAD_TIMEOUT_MS: "100" },
  });
  const echo = (headers: Record<string, string>) =>
    call(inferline.url, "POST", "/api/ml/echo", { text: "hi" }, headers);
  const reload = (headers: Record<string, string>) =>
    call(inferline.url, "POST", "/api/admin/models/reload", undefined, headers);

  void it("probes are open without a key", async () => {
    assert.equal((await call(inferline.url, "GET", "/health/live")).status, 200);
    assert.notEqual((await call(inferline.url, "GET", "/health/ready")).status, 401);
  });

  void it("no key: 401 with WWW-Authenticate and the catalog's code", async () => {
    const r = await echo({});
    assert.equal(r.status, 401);
    assert.equal(code(r.body), "unauthorized");
    assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer /);
  });

  void it("a wrong or malformed key: 401", async () => {
    assert.equal((await echo(bearer("ilk_not-a-key"))).status, 401);
    assert.equal((await echo({ authorization: "Basic Zm9vOmJhcg==" })).status, 401);
    assert.equal((await echo({ "x-api-key": keys.predict + "x" })).status, 401);
  });

  void it("a predict key submits, as Bearer or X-API-Key", async () => {
    assert.equal((await echo(bearer(keys.predict))).status, 202);
    assert.equal((await echo({ "x-api-key": keys.predict })).status, 202);
    assert.equal(
      (await call(inferline.url, "GET", "/api/models", undefined, bearer(keys.predict))).status,
      200,
    );
  });

  void it("a predict key on an admin route: 403", async () => {
    const r = await reload(bearer(keys.predict));
    assert.equal(r.status, 403);
    assert.equal(code(r.body), "forbidden");
  });

  void it("an Idempotency-Key belongs to its caller: another key neither finds its job nor is refused", async () => {
    const idem = { "idempotency-key": "order-1001" };
    const submit = (key: string, text: string) =>
      call(inferline.url, "POST", "/api/ml/echo", { text }, { ...bearer(key), ...idem });
    const first = await submit(keys.predict, "the first caller's private text");
    assert.equal(first.status, 202);
    const other = await submit(keys.admin, "another caller, the same key");
    assert.equal(other.status, 202, JSON.stringify(other.body));
    assert.notEqual(other.body.job_id, first.body.job_id);
    assert.doesNotMatch(JSON.stringify(other.body), new RegExp(String(first.body.job_id)));
    // Each caller's retries still find their own job.
    assert.equal(
      (await submit(keys.predict, "the first caller's private text")).body.job_id,
      first.body.job_id,
    );
    assert.equal((await submit(keys.admin, "another caller, the same key")).body.job_id, other.body.job_id);
    assert.equal((await submit(keys.predict, "a different body")).status, 422);
  });

  void it("an admin key reaches admin routes and, implying predict, the model routes", async () => {
    const r = await reload(bearer(keys.admin));
    assert.ok(r.status !== 401 && r.status !== 403, `status ${r.status}`);
    assert.equal((await echo(bearer(keys.admin))).status, 202);
    assert.equal((await reload({})).status, 401);
  });

  void it("unknown routes need a key before they answer 404", async () => {
    const refused = await call(inferline.url, "GET", "/nothing-here");
    assert.equal(refused.status, 401);
    // Security headers go on every answer, errors included.
    assert.match(refused.headers.get("content-security-policy") ?? "", /default-src 'self'/);
    assert.equal(refused.headers.get("x-content-type-options"), "nosniff");
    assert.equal(
      (await call(inferline.url, "GET", "/nothing-here", undefined, bearer(keys.predict))).status,
      404,
    );
  });

  void it("dashboard: a browser without a session is sent to the sign-in form", async () => {
    const res = await fetch(`${inferline.url}/dashboard`, {
      headers: { accept: "text/html" },
      redirect: "manual",
    });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get("location"), "/dashboard/login");
    const form = await fetch(`${inferline.url}/dashboard/login`);
    assert.equal(form.status, 200);
    assert.match(await form.text(), /<form method="post" action="\/dashboard\/login">/);
    const csp = form.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(form.headers.get("x-content-type-options"), "nosniff");
    assert.equal(form.headers.get("x-frame-options"), "DENY");
  });

  const login = (key: string, headers: Record<string, string> = {}) =>
    fetch(`${inferline.url}/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
      body: new URLSearchParams({ key }).toString(),
      redirect: "manual",
    });

  void it("dashboard login: an admin key gets an HttpOnly, SameSite=Strict session cookie that works", async () => {
    // As an API request would be answered: a known key without the scope is 403.
    const predict = await login(keys.predict);
    assert.equal(predict.status, 403);
    assert.match(await predict.text(), /That key has no admin scope/);
    assert.equal((await login("wrong")).status, 401);
    const res = await login(keys.admin);
    assert.equal(res.status, 303);
    assert.equal(res.headers.get("location"), "/dashboard");
    const cookie = res.headers.get("set-cookie") ?? "";
    assert.match(cookie, /^inferline_session=[^;]+; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Strict$/);
    const session = cookie.split(";")[0] ?? "";
    const withCookie = await reload({ cookie: session });
    assert.ok(withCookie.status !== 401 && withCookie.status !== 403, `status ${withCookie.status}`);
    const forged = session.replace(/.$/, (c) => (c === "A" ? "B" : "A"));
    assert.equal((await reload({ cookie: forged })).status, 401);
  });

  void it("a session acts only from its own origin: a same-site page on another port is refused", async () => {
    const session = ((await login(keys.admin)).headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    const host = new URL(inferline.url).host;
    // What a browser sends for a bodyless no-cors POST from http://<same host>:<other port>.
    const refused: Record<string, string>[] = [
      { "sec-fetch-site": "same-site", origin: "http://127.0.0.1:1" },
      { "sec-fetch-site": "cross-site", origin: "https://elsewhere.example" },
      { origin: "http://127.0.0.1:1" },
      { origin: "null" },
    ];
    for (const headers of refused) {
      const r = await reload({ cookie: session, ...headers });
      assert.equal(r.status, 403, JSON.stringify(headers));
      assert.equal(code(r.body), "cross_origin_request");
    }
    // The dashboard's own pages, and clients that are no browser, still act.
    const accepted: Record<string, string>[] = [
      { "sec-fetch-site": "same-origin", origin: `http://${host}` },
      { origin: `http://${host}` },
      {},
    ];
    for (const headers of accepted) {
      const r = await reload({ cookie: session, ...headers });
      assert.ok(r.status !== 401 && r.status !== 403, `${JSON.stringify(headers)}: status ${r.status}`);
    }
    // Behind a proxy that passes the host name without the port (nginx's $host).
    const proxied = await request(`${inferline.url}/api/admin/models/reload`, {
      method: "POST",
      headers: { cookie: session, origin: `http://${host}`, host: new URL(inferline.url).hostname },
    });
    await proxied.body.dump();
    assert.ok(proxied.statusCode !== 401 && proxied.statusCode !== 403, `status ${proxied.statusCode}`);
    const elsewhere = await request(`${inferline.url}/api/admin/models/reload`, {
      method: "POST",
      headers: { cookie: session, origin: "http://127.0.0.2:1", host: new URL(inferline.url).hostname },
    });
    await elsewhere.body.dump();
    assert.equal(elsewhere.statusCode, 403);
    // Reading is not acting: a GET from a same-site page is answered (the browser keeps the body).
    const read = await call(inferline.url, "GET", "/api/models", undefined, {
      cookie: session,
      "sec-fetch-site": "same-site",
    });
    assert.equal(read.status, 200);
    // An API key is no ambient credential: it is accepted whatever the origin.
    assert.notEqual((await reload({ ...bearer(keys.admin), "sec-fetch-site": "cross-site" })).status, 403);
  });

  const logout = (headers: Record<string, string>) =>
    fetch(`${inferline.url}/dashboard/logout`, { method: "POST", headers, redirect: "manual" });

  void it("dashboard logout ends the session on the server: a copy of the cookie is refused", async () => {
    const session = ((await login(keys.admin)).headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    const stats = () => call(inferline.url, "GET", "/api/stats", undefined, { cookie: session });
    assert.equal((await stats()).status, 200);
    const host = new URL(inferline.url).host;
    const signedIn = await fetch(`${inferline.url}/dashboard`, {
      headers: { cookie: session, accept: "text/html" },
    });
    assert.match(await signedIn.text(), /<form id="signout" method="post" action="\/dashboard\/logout">/);
    // Signed in, the address with a slash leads to the page, and a mistyped one is a page too.
    const slash = await fetch(`${inferline.url}/dashboard/`, {
      headers: { cookie: session, accept: "text/html" },
      redirect: "manual",
    });
    assert.equal(slash.status, 301);
    assert.equal(slash.headers.get("location"), "/dashboard");
    const withQuery = await fetch(`${inferline.url}/dashboard/?tab=queues`, {
      method: "HEAD",
      headers: { cookie: session },
      redirect: "manual",
    });
    assert.equal(withQuery.status, 301);
    assert.equal(withQuery.headers.get("location"), "/dashboard?tab=queues");
    // The sign-in page answers whatever its query says.
    for (const query of ["?ended=1", "?ended=123456789", "?ended=1&ended=2", "?ended"]) {
      const login = await fetch(`${inferline.url}/dashboard/login${query}`);
      assert.equal(login.status, 200, query);
      assert.match(await login.text(), /session has ended/, query);
    }
    const typo = await fetch(`${inferline.url}/dashboard/stats`, {
      headers: { cookie: session, accept: "text/html" },
    });
    assert.equal(typo.status, 404);
    assert.match(typo.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(
      await typo.text(),
      /no route GET \/dashboard\/stats \(404 route_not_found\)[\s\S]*href="\/dashboard"/,
    );
    const fetched = await call(inferline.url, "GET", "/dashboard/stats", undefined, { cookie: session });
    assert.equal(code(fetched.body), "route_not_found");

    // Only from the API's own pages: a same-site page cannot sign the operator out.
    const elsewhere: Record<string, string>[] = [
      { "sec-fetch-site": "same-site" },
      { origin: "http://127.0.0.1:1" },
    ];
    for (const headers of elsewhere) {
      const r = await logout({ cookie: session, ...headers });
      assert.equal(r.status, 403, JSON.stringify(headers));
      assert.equal(code((await r.json()) as Record<string, unknown>), "cross_origin_request");
    }
    assert.equal((await stats()).status, 200);

    const out = await logout({ cookie: session, "sec-fetch-site": "same-origin", origin: `http://${host}` });
    assert.equal(out.status, 303);
    assert.equal(out.headers.get("location"), "/dashboard/login");
    assert.match(out.headers.get("set-cookie") ?? "", /^inferline_session=; Path=\/; Max-Age=0; HttpOnly/);
    // The browser drops the cookie; a copy of it taken before is refused everywhere.
    const after = await stats();
    assert.equal(after.status, 401);
    assert.equal(code(after.body), "unauthorized");
    assert.equal((await reload({ cookie: session })).status, 401);
    const page = await fetch(`${inferline.url}/dashboard`, {
      headers: { cookie: session, accept: "text/html" },
      redirect: "manual",
    });
    assert.equal(page.status, 303);
    // Signing out again (or without a session) is harmless.
    assert.equal((await logout({ cookie: session })).status, 303);
    assert.equal((await logout({})).status, 303);
  });

  void it("a same-named cookie planted by a sibling subdomain neither hides the session nor survives sign-out", async () => {
    const session = ((await login(keys.admin)).headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    // A page of another subdomain of the same site can set inferline_session for the parent
    // domain with a longer Path: the browser then sends that cookie first, the API's own after it.
    const planted = `inferline_session=${"0".repeat(16)}.planted.9999999999.not-signed-here; ${session}`;
    const page = await fetch(`${inferline.url}/dashboard`, {
      headers: { cookie: planted, accept: "text/html" },
      redirect: "manual",
    });
    assert.equal(page.status, 200);
    assert.equal(
      (await call(inferline.url, "GET", "/api/stats", undefined, { cookie: planted })).status,
      200,
    );
    // Signing out with both cookies ends the operator's session, wherever its cookie came.
    const out = await logout({ cookie: planted, "sec-fetch-site": "same-origin" });
    assert.equal(out.status, 303);
    assert.equal(
      (await call(inferline.url, "GET", "/api/stats", undefined, { cookie: session })).status,
      401,
    );
  });

  void it("dashboard login takes a key pasted with spaces or a line break around it", async () => {
    const res = await login(` ${keys.admin}\n`);
    assert.equal(res.status, 303);
    assert.match(res.headers.get("set-cookie") ?? "", /^inferline_session=/);
  });

  void it("dashboard login in another encoding: 415 naming both it takes", async () => {
    const res = await fetch(`${inferline.url}/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "text/xml" },
      body: "<key/>",
    });
    assert.equal(res.status, 415);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, "unsupported_media_type");
    assert.match(body.error.message, /a form \(Content-Type: application\/x-www-form-urlencoded\) or JSON/);
  });

  void it("dashboard login behind TLS marks the cookie Secure", async () => {
    const res = await login(keys.admin, { "x-forwarded-proto": "https" });
    assert.match(res.headers.get("set-cookie") ?? "", /; Secure$/);
  });

  void it("responses carry no stack traces or internal messages", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/echo", "{bad json", bearer(keys.predict));
    assert.equal(r.status, 400);
    assert.doesNotMatch(JSON.stringify(r.body), /\bat .+\.(js|ts):\d+|node_modules|\/src\//);
  });
});

void describe("health kept for keys (HEALTH_PUBLIC=false)", () => {
  const keys = testKeys();
  const inferline = useInferline("sec-health-closed", { env: { ...keys.env, HEALTH_PUBLIC: "false" } });

  void it("readiness stays open to probes but names no reasons; /health gives them to a key", async () => {
    const ready = await call(inferline.url, "GET", "/health/ready");
    assert.ok(ready.status === 200 || ready.status === 503, String(ready.status));
    assert.ok(typeof ready.body.health === "string");
    assert.equal(ready.body.reasons, undefined);
    assert.equal((await call(inferline.url, "GET", "/health")).status, 401);
    const full = await call(inferline.url, "GET", "/health", undefined, bearer(keys.predict));
    assert.ok(Array.isArray(full.body.reasons));
  });
});

void describe("authentication off (AUTH_DISABLED)", () => {
  const LISTED = "https://app.example";
  const inferline = useInferline("sec-auth-off", { env: { AUTH_DISABLED: "true", CORS_ORIGINS: LISTED } });

  void it("a browser changes nothing from another origin; its own pages, CORS_ORIGINS and non-browsers do", async () => {
    const host = new URL(inferline.url).host;
    const submit = (headers: Record<string, string>) =>
      call(inferline.url, "POST", "/api/ml/echo", { text: "from a page" }, headers);
    const refused: Record<string, string>[] = [
      { "sec-fetch-site": "cross-site", origin: "https://elsewhere.example" },
      { "sec-fetch-site": "same-site", origin: "http://127.0.0.1:1" },
      { origin: "https://elsewhere.example" },
    ];
    for (const headers of refused) {
      const r = await submit(headers);
      assert.equal(r.status, 403, JSON.stringify(headers));
      assert.equal(code(r.body), "cross_origin_request");
      assert.match(String((r.body.error as { message: string }).message), /AUTH_DISABLED/);
    }
    const cancel = await call(inferline.url, "DELETE", "/api/results/nope", undefined, {
      "sec-fetch-site": "cross-site",
      origin: "https://elsewhere.example",
    });
    assert.equal(cancel.status, 403);
    const accepted: Record<string, string>[] = [
      { "sec-fetch-site": "same-origin", origin: `http://${host}` },
      { "sec-fetch-site": "cross-site", origin: LISTED },
      {},
    ];
    for (const headers of accepted)
      assert.equal((await submit(headers)).status, 202, JSON.stringify(headers));
    // Reading stays open to every page, as CORS decides what a page may see of the answer.
    const read = await call(inferline.url, "GET", "/api/models", undefined, {
      "sec-fetch-site": "cross-site",
    });
    assert.equal(read.status, 200);
  });
});

void describe("authentication off with keys still configured", () => {
  const keys = testKeys();
  const inferline = useInferline("sec-auth-off-keys", { env: { ...keys.env, AUTH_DISABLED: "true" } });

  void it("signing in to the dashboard leads to it, without a session and without a Redis error", async () => {
    const form = await fetch(`${inferline.url}/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ key: keys.admin }).toString(),
      redirect: "manual",
    });
    assert.equal(form.status, 303);
    assert.equal(form.headers.get("location"), "/dashboard");
    assert.equal(form.headers.get("set-cookie"), null);
    const json = await call(inferline.url, "POST", "/dashboard/login", { key: keys.admin });
    assert.equal(json.status, 204, JSON.stringify(json.body));
    const page = await fetch(`${inferline.url}/dashboard`, { headers: { accept: "text/html" } });
    assert.equal(page.status, 200);
    // No session, so the page offers no sign-out.
    const html = await page.text();
    assert.match(html, /<header>/);
    assert.doesNotMatch(html, /signout|Sign out/);
  });
});

void describe("no keys configured", () => {
  const inferline = useInferline("sec-no-keys", { env: { AUTH_DISABLED: "false" } });

  void it("the dashboard's sign-in says that no key can sign in, as the API does", async () => {
    const key = "ilk_" + "k".repeat(43);
    const form = await fetch(`${inferline.url}/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ key }).toString(),
    });
    assert.equal(form.status, 401);
    assert.match(await form.text(), /No API keys are configured on this server \(API_KEYS\)/);
    const json = await call(inferline.url, "POST", "/dashboard/login", { key });
    assert.equal(json.status, 401);
    const api = await call(inferline.url, "GET", "/api/models", undefined, bearer(key));
    assert.equal(
      (json.body.error as { message: string }).message,
      (api.body.error as { message: string }).message,
    );
    assert.match((api.body.error as { message: string }).message, /no API keys are configured/);
  });
});

void describe("route access", () => {
  const cfg = testConfig("unused", { AUTH_DISABLED: "false" });
  void it("defaults by path, and to admin for anything unknown", () => {
    assert.equal(accessFor("/health/live", "GET", undefined, cfg), "public");
    assert.equal(accessFor("/api/ml/:model", "POST", undefined, cfg), "predict");
    assert.equal(accessFor("/api/results/:jobId", "GET", undefined, cfg), "predict");
    assert.equal(accessFor("/api/admin/jobs", "GET", undefined, cfg), "admin");
    assert.equal(accessFor("/api/stats", "GET", undefined, cfg), "admin");
    assert.equal(accessFor("/dashboard", "GET", undefined, cfg), "admin");
    assert.equal(accessFor("/api/whatever", "GET", "predict", cfg), "predict");
  });
  void it("/health and /metrics follow HEALTH_PUBLIC and METRICS_PUBLIC", () => {
    assert.equal(accessFor("/health", "GET", undefined, cfg), "public");
    assert.equal(accessFor("/metrics", "GET", "public", cfg), "public");
    const closed = testConfig("unused", { HEALTH_PUBLIC: "false", METRICS_PUBLIC: "false" });
    assert.equal(accessFor("/health", "GET", "public", closed), "predict");
    assert.equal(accessFor("/metrics", "GET", "public", closed), "predict");
  });
  void it("auth is on unless switched off explicitly", () => {
    assert.equal(testConfig("unused", { AUTH_DISABLED: "" }).AUTH_DISABLED, false);
  });
});

void describe("keys and sessions", () => {
  void it("inferline keys create prints a key and the API_KEYS entry of its hash", async () => {
    const p = spawnCli(["keys", "create", "--scope", "admin", "--name", "ci"], {});
    let out = "";
    p.proc.stdout?.on("data", (c: Buffer) => (out += c.toString()));
    const { code: exit } = await p.exited;
    assert.equal(exit, 0);
    const key = /^key\s+(\S+)$/m.exec(out)?.[1] ?? "";
    const entry = /^API_KEYS\s+(\S+)$/m.exec(out)?.[1] ?? "";
    assert.match(key, /^ilk_[A-Za-z0-9_-]{43}$/);
    assert.equal(entry, `${hashKey(key)}:admin:ci`);
  });

  void it("a key ring matches only the exact key", () => {
    const ring = new KeyRing([{ hash: hashKey("k1"), scope: "predict", name: "one" }]);
    assert.equal(ring.verify("k1")?.name, "one");
    assert.equal(ring.verify("k2"), undefined);
    assert.equal(ring.verify(""), undefined);
    assert.equal(ring.verify("k".repeat(10_000)), undefined);
  });

  void it("sessions expire, end when revoked, and do not survive another secret", async () => {
    const prefix = uniquePrefix("sessions");
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    const away = new Redis(`redis://127.0.0.1:${await freePort()}`, {
      enableOfflineQueue: false,
      retryStrategy: () => null,
    });
    away.on("error", () => {});
    try {
      const a = new SessionStore("a".repeat(32), 60, redis, prefix);
      const token = await a.issue("abc");
      assert.equal(await a.verify(token), "abc");
      assert.equal(await a.verify(token, Date.now() + 61_000), undefined);
      assert.equal(await new SessionStore("b".repeat(32), 60, redis, prefix).verify(token), undefined);
      // The record expires with the session.
      const ttl = await redis.ttl(`${prefix}:session:${token.split(".")[1]}`);
      assert.ok(ttl > 0 && ttl <= 60, `ttl ${ttl}`);
      // Redis not answering: refused with an error (503), never taken as valid.
      await assert.rejects(
        new SessionStore("a".repeat(32), 60, away, prefix).verify(token),
        RedisUnavailableError,
      );
      assert.equal(await a.revoke(token), true);
      assert.equal(await a.verify(token), undefined);
      assert.equal(await a.revoke(token), false);
      // A forged token ends nothing.
      const other = await a.issue("abc");
      assert.equal(await a.revoke(other.replace(/.$/, (c) => (c === "A" ? "B" : "A"))), false);
      assert.equal(await a.verify(other), "abc");
    } finally {
      redis.disconnect();
      away.disconnect();
      await cleanupPrefix(prefix);
    }
  });
});
