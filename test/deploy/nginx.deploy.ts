import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, request } from "undici";
import { testEnv } from "../support/config.js";
import { freePort } from "../support/http.js";
import { spawnCli, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import { load } from "./support/load.js";
import { startNginx, type LocalNginx } from "./support/nginx.js";

void describe("nginx load balancing over three API processes (deploy/nginx)", () => {
  const prefix = uniquePrefix("nginx");
  const apis: { port: number; proc: Spawned }[] = [];
  let nginx: LocalNginx;

  before(async () => {
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const proc = spawnCli(
        ["api", "--port", String(port)],
        testEnv(prefix, { LOG_LEVEL: "info", MODELS: "echo" }),
      );
      apis.push({ port, proc });
    }
    await Promise.all(apis.map((a) => a.proc.waitForLine((l) => l.event === "api_started", 30_000)));
    nginx = await startNginx(
      await freePort(),
      apis.map((a) => `127.0.0.1:${a.port}`),
      // One loopback client makes all the load: lift the per-client limit (checked separately).
      { ratePerSecond: 100_000 },
    );
  });

  after(async () => {
    await nginx?.stop();
    await Promise.all(apis.map((a) => stop(a.proc)));
    await cleanupPrefix(prefix);
  });

  void it("answers JSON for nginx's own errors and hides /metrics", async () => {
    const metrics = await fetch(`${nginx.url}/metrics`);
    assert.equal(metrics.status, 404);
    assert.match(metrics.headers.get("content-type") ?? "", /application\/json/);
    const body = (await metrics.json()) as { error: { code: string } };
    assert.equal(body.error.code, "route_not_found", "the API's code for it");
    // Requests nginx itself refuses before any location: JSON with the API's codes, too.
    for (const [path, headers, status, code] of [
      ["/metrics%00", {}, 400, "malformed_request"],
      [`/api/models?${"q".repeat(10_000)}`, {}, 414, "uri_too_long"],
      ["/api/models", { "x-big": "h".repeat(10_000) }, 431, "headers_too_large"],
    ] as const) {
      const r = await fetch(`${nginx.url}${path}`, { headers });
      assert.equal(r.status, status, path.slice(0, 20));
      assert.match(r.headers.get("content-type") ?? "", /application\/json/, path.slice(0, 20));
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, code);
    }
    const big = await fetch(`${nginx.url}/api/ml/echo`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text: "x".repeat(2 * 1024 * 1024) }),
    });
    assert.equal(big.status, 413);
    assert.equal(((await big.json()) as { error: { code: string } }).error.code, "payload_too_large");
  });

  void it("keeps the client's valid request id through to the API; makes one otherwise", async () => {
    const health = (id?: string) =>
      fetch(`${nginx.url}/api/models`, { headers: id === undefined ? {} : { "x-request-id": id } });
    const given = await health("client-req-42");
    assert.equal(given.headers.get("x-request-id"), "client-req-42");
    // No id, or one the API would not take: nginx's own, the same in its log and the API's.
    for (const id of [undefined, "has spaces in it"]) {
      const made = (await health(id)).headers.get("x-request-id") ?? "";
      assert.match(made, /^[0-9a-f]{32}$/);
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(nginx.accessLog().some((l) => l.request_id === made));
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(nginx.accessLog().some((l) => l.request_id === "client-req-42"));
  });

  void it("logs a request's path, never its query string (where a careless client may put a key)", async () => {
    const r = await fetch(`${nginx.url}/api/models?api_key=secret-in-a-query`, {
      headers: { "x-request-id": "query-logged" },
    });
    await r.arrayBuffer();
    await new Promise((r) => setTimeout(r, 300));
    const line = nginx.accessLog().find((l) => l.request_id === "query-logged");
    assert.equal(line?.path, "/api/models", JSON.stringify(line));
    assert.ok(!JSON.stringify(nginx.accessLog()).includes("secret-in-a-query"));
  });

  void it("rate-limits one client on the prediction routes with a JSON 429", async () => {
    const limited = await startNginx(await freePort(), [`127.0.0.1:${apis[0]!.port}`]);
    try {
      const replies = await Promise.all(
        Array.from({ length: 300 }, () =>
          fetch(`${limited.url}/api/ml/echo`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ text: "burst" }),
          }).then(async (r) => ({
            status: r.status,
            retry: r.headers.get("retry-after"),
            body: await r.text(),
          })),
        ),
      );
      const over = replies.filter((r) => r.status === 429);
      assert.ok(over.length > 50, `429s: ${over.length}`);
      assert.equal(over[0]!.retry, "1");
      assert.equal((JSON.parse(over[0]!.body) as { error: { code: string } }).error.code, "rate_limited");
      assert.ok(replies.filter((r) => r.status === 202).length >= 100, "the burst allowance is served");
    } finally {
      await limited.stop();
    }
  });

  void it("the API's per-address limit counts the client nginx saw, whatever X-Forwarded-For it sends", async () => {
    // As compose runs it: TRUST_PROXY=true behind nginx.
    const port = await freePort();
    const api = spawnCli(
      ["api", "--port", String(port)],
      testEnv(prefix, {
        MODELS: "echo",
        LOG_LEVEL: "info",
        TRUST_PROXY: "true",
        RATE_LIMIT_IP_RPS: "1",
        RATE_LIMIT_IP_BURST: "5",
      }),
    );
    let front: LocalNginx | undefined;
    try {
      await api.waitForLine((l) => l.event === "api_started", 30_000);
      front = await startNginx(await freePort(), [`127.0.0.1:${port}`]);
      const statuses: number[] = [];
      // One client, a new made-up address in each request: one bucket all the same.
      for (let i = 0; i < 10; i++) {
        const r = await fetch(`${front.url}/health`, { headers: { "x-forwarded-for": `203.0.113.${i}` } });
        statuses.push(r.status);
      }
      assert.ok(statuses.filter((s) => s === 429).length >= 4, `statuses: ${statuses.join(" ")}`);
    } finally {
      await front?.stop();
      await stop(api);
    }
  });

  void it("over TLS, browsers get the TLS server's HSTS policy, once", async () => {
    const secure = await startNginx(await freePort(), [`127.0.0.1:${apis[0]!.port}`], {
      tlsPort: await freePort(),
    });
    const selfSigned = new Agent({ connect: { rejectUnauthorized: false } });
    try {
      for (const path of ["/api/models", "/health/live", "/no-such-route"]) {
        const res = await request(`${secure.httpsUrl}${path}`, { dispatcher: selfSigned });
        await res.body.dump();
        // A browser heeds only the first Strict-Transport-Security header of an answer.
        assert.equal(
          String(res.headers["strict-transport-security"]),
          "max-age=31536000; includeSubDomains",
          path,
        );
      }
    } finally {
      await selfSigned.close();
      await secure.stop();
    }
    // nginx's own 503 (no API answers) sets Retry-After, which drops the server's headers:
    // it carries the policy all the same.
    const alone = await startNginx(await freePort(), [`127.0.0.1:${await freePort()}`], {
      tlsPort: await freePort(),
    });
    const agent = new Agent({ connect: { rejectUnauthorized: false } });
    try {
      const res = await request(`${alone.httpsUrl}/api/models`, { dispatcher: agent });
      assert.equal(res.statusCode, 503);
      assert.equal(
        ((await res.body.json()) as { error: { code: string } }).error.code,
        "service_unavailable",
      );
      assert.equal(String(res.headers["strict-transport-security"]), "max-age=31536000; includeSubDomains");
      // Plain HTTP gets none.
      const plain = await fetch(`${alone.url}/api/models`);
      assert.equal(plain.status, 503);
      assert.equal(plain.headers.get("strict-transport-security"), null);
    } finally {
      await agent.close();
      await alone.stop();
    }
  });

  void it("passes a job's event stream through as it is written, not when it ends", async () => {
    // No worker runs here: the job stays queued, its stream sends the queued view and stays open.
    // A buffering proxy would hold that event until the stream ended (75 s later, at the read
    // timeout).
    const queued = await fetch(`${nginx.url}/api/ml/echo`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text: "stream" }),
    });
    assert.equal(queued.status, 202);
    const { job_id: jobId } = (await queued.json()) as { job_id: string };
    const hangUp = new AbortController();
    try {
      const stream = await fetch(`${nginx.url}/api/results/${jobId}/events`, { signal: hangUp.signal });
      assert.equal(stream.status, 200);
      assert.match(stream.headers.get("content-type") ?? "", /text\/event-stream/);
      const reader = stream.body!.getReader() as ReadableStreamDefaultReader<Uint8Array>;
      const first = await Promise.race([reader.read(), sleep(20_000).then(() => undefined)]);
      assert.ok(first && !first.done, "no event through nginx within 20 s");
      assert.match(new TextDecoder().decode(first.value), /^event: status\n[\s\S]*"status":"queued"/);
    } finally {
      hangUp.abort();
    }
  });

  void it("spreads requests over all three and loses < 0.1% when one is killed mid-load", async () => {
    const paths = ["/api/models", "/health/live", "/api/ml/echo"];
    let killed = false;
    let sent = 0;
    // A fixed count of requests, not a time: a loaded machine takes longer, the test means the same.
    const result = await load(
      120_000,
      16,
      (i) => {
        const p = paths[i % paths.length]!;
        return p === "/api/ml/echo"
          ? fetch(nginx.url + p, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ text: `load ${i}` }),
            })
          : fetch(nginx.url + p);
      },
      (done) => {
        sent = done;
        if (!killed && done > 1500) {
          killed = true;
          apis[2]!.proc.kill("SIGKILL");
        }
      },
      () => sent >= 10_000,
    );
    assert.ok(killed, "an API process was killed during the run");
    const rate = result.failed / result.total;
    console.log(
      `nginx load: ${result.total} requests, ${result.failed} failed (${(rate * 100).toFixed(3)}%)`,
      result.byStatus,
    );
    assert.ok(result.total >= 10_000, `enough load within two minutes: ${result.total}`);
    assert.ok(rate < 0.001, `failed ${result.failed}/${result.total}: ${JSON.stringify(result.byStatus)}`);

    const served = new Map<string, number>();
    for (const line of nginx.accessLog()) {
      for (const addr of String(line.upstream).split(/[ ,:]+\s*/)) {
        if (addr) served.set(addr, (served.get(addr) ?? 0) + 1);
      }
    }
    for (const a of apis) {
      const n = served.get(String(a.port)) ?? 0;
      assert.ok(n > 100, `127.0.0.1:${a.port} served ${n} requests`);
    }
  });
});
