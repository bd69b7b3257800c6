import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { chromium, type Browser } from "playwright-core";
import { request } from "undici";
import { ConfigError } from "../../src/config/index.js";
import { hostAllowance } from "../../src/http/allowed-hosts.js";
import { testConfig } from "../support/config.js";
import { useInferline } from "../support/inferline.js";

const CHROMIUM = "/usr/bin/chromium";
const REBOUND = "rebind.attacker.test";

interface Answer {
  status: number;
  body: { error?: { code: string; message: string; details?: { host?: string } } };
}

void describe("authentication off: only the server's own names are answered (DNS rebinding)", () => {
  const inferline = useInferline("sec-hosts", {
    env: { AUTH_DISABLED: "true", MODELS: "echo", ALLOWED_HOSTS: "inferline.lan, .corp.example" },
  });
  const port = () => new URL(inferline.url).port;
  const send = async (
    method: "GET" | "POST" | "DELETE",
    path: string,
    host: string,
    headers: Record<string, string> = {},
  ): Promise<Answer> => {
    const res = await request(`${inferline.url}${path}`, {
      method,
      headers: {
        host,
        ...headers,
        ...(method === "POST" ? { "content-type": "application/json" } : {}),
      },
      body: method === "POST" ? JSON.stringify({ text: "hi" }) : undefined,
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? (JSON.parse(text) as Answer["body"]) : {} };
  };

  void it("a foreign Host gets 403 host_not_allowed naming the header and ALLOWED_HOSTS, on every route", async () => {
    const foreign = `${REBOUND}:${port()}`;
    const sameOrigin = { "sec-fetch-site": "same-origin", origin: `http://${foreign}` };
    for (const [method, path, headers] of [
      ["GET", "/api/models", {}],
      ["POST", "/api/ml/echo", sameOrigin],
      ["DELETE", "/api/results/some-job", sameOrigin],
      ["POST", "/api/admin/models/reload", sameOrigin],
      ["GET", "/api/stats", {}],
      ["GET", "/dashboard", {}],
      ["GET", "/nothing-here", {}],
      // X-Forwarded-Host is written by the page itself: the Host header decides.
      ["GET", "/api/models", { "x-forwarded-host": "localhost" }],
    ] as const) {
      const r = await send(method, path, foreign, headers);
      assert.equal(r.status, 403, `${method} ${path}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error?.code, "host_not_allowed");
      assert.equal(r.body.error?.details?.host, foreign);
      assert.ok(r.body.error?.message.includes(`"${foreign}"`), r.body.error?.message);
      assert.match(r.body.error?.message ?? "", /Host header.*AUTH_DISABLED.*ALLOWED_HOSTS/);
    }
    // A browser loading the page gets the same answer as a page, and the page's own host in it
    // as text.
    for (const path of ["/dashboard", "/dashboard/"]) {
      const page = await request(`${inferline.url}${path}`, {
        headers: { host: `<b>${foreign}</b>`, accept: "text/html" },
      });
      assert.equal(page.statusCode, 403);
      assert.match(String(page.headers["content-type"]), /^text\/html/, path);
      const html = await page.body.text();
      assert.match(html, /\(403 host_not_allowed\)/);
      assert.match(html, /&#60;b&#62;rebind\.attacker\.test/);
      assert.doesNotMatch(html, /<b>/);
    }
    for (const host of ["inferline.lan.evil.example", "corp.example.evil", "localhost.evil.example"])
      assert.equal((await send("GET", "/api/models", host)).status, 403, host);
  });

  void it("probes answer whatever name they use", async () => {
    assert.equal((await send("GET", "/health/live", `${REBOUND}:${port()}`)).status, 200);
    assert.notEqual((await send("GET", "/health/ready", `10-0-0-7.pod.cluster.local`)).status, 403);
  });

  void it("loopback names, IP addresses and ALLOWED_HOSTS entries are answered", async () => {
    for (const host of [
      `localhost:${port()}`,
      "LOCALHOST",
      `127.0.0.1:${port()}`,
      `[::1]:${port()}`,
      "dev.localhost",
      "192.168.1.20:3000",
      "inferline.lan",
      "corp.example",
      `api.corp.example:${port()}`,
    ]) {
      const r = await send("GET", "/api/models", host);
      assert.equal(r.status, 200, `${host}: ${JSON.stringify(r.body)}`);
    }
    const posted = await send("POST", "/api/ml/echo", `localhost:${port()}`, {
      "sec-fetch-site": "same-origin",
    });
    assert.equal(posted.status, 202, JSON.stringify(posted.body));
  });

  void it("HOST counts as allowed when it is a name; wildcards name nothing", () => {
    assert.equal(hostAllowance("inferline.internal")("inferline.internal:3000"), true);
    assert.equal(hostAllowance("0.0.0.0")("0.0.0.0.attacker.test"), false);
    assert.equal(hostAllowance("::")("attacker.test"), false);
    assert.equal(hostAllowance("127.0.0.1", ["*"])("anything.example"), true);
  });

  void it("ALLOWED_HOSTS entries with a scheme, port or path stop the boot naming the variable", () => {
    for (const bad of ["http://inferline.lan", "inferline.lan:3000", "inferline.lan/x"])
      assert.throws(
        () => testConfig("x", { ALLOWED_HOSTS: bad }),
        (err: unknown) => err instanceof ConfigError && /ALLOWED_HOSTS/.test(err.message),
        bad,
      );
    assert.deepEqual(testConfig("x", { ALLOWED_HOSTS: " A.Example. , .b.example" }).ALLOWED_HOSTS, [
      "a.example",
      ".b.example",
    ]);
  });
});

void describe(
  "authentication off, in Chromium: a page of a rebound name reads and changes nothing",
  { skip: !existsSync(CHROMIUM) && `${CHROMIUM} missing` },
  () => {
    let browser: Browser | undefined;
    after(async () => {
      await browser?.close();
    });
    const inferline = useInferline("sec-hosts-browser", { env: { AUTH_DISABLED: "true", MODELS: "echo" } });
    before(async () => {
      // The attacker's DNS answers 127.0.0.1 for its own name.
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          `--host-resolver-rules=MAP ${REBOUND} 127.0.0.1`,
        ],
      });
    });

    void it("same-origin reads and writes from the rebound name are refused; the API's own page still works", async () => {
      const page = await browser!.newPage();
      const port = new URL(inferline.url).port;
      const landing = await page.goto(`http://${REBOUND}:${port}/health/live`);
      assert.equal(landing?.status(), 200);
      const tried = await page.evaluate(async () => {
        const read = await fetch("/api/models");
        const write = await fetch("/api/ml/echo", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ text: "from the attacker's page" }),
        });
        return {
          read: read.status,
          write: write.status,
          code: ((await write.json()) as { error?: { code?: string } }).error?.code,
        };
      });
      assert.deepEqual(tried, { read: 403, write: 403, code: "host_not_allowed" });

      await page.goto(`${inferline.url}/health/live`);
      const own = await page.evaluate(async () => {
        const write = await fetch("/api/ml/echo", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ text: "from the API's own page" }),
        });
        return write.status;
      });
      assert.equal(own, 202);
    });
  },
);
