import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { chromium, type Browser, type Page } from "playwright-core";
import { call, eventually } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { testConfig, testEnv } from "../support/config.js";
import { newJobId, queueName } from "../../src/queue/keys.js";
import { cleanupPrefix, ownRedis, REDIS_URL, uniquePrefix, type OwnRedis } from "../support/redis.js";
import { ROOT, spawnWorker, stop, type Spawned } from "../support/processes.js";
import { testKeys } from "../security/support.js";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"];
const ENV = { MODELS: "sentiment,echo,cars-mpg", JOB_ATTEMPTS: "1", STATS_FLUSH_INTERVAL_MS: "100" };

const TEXTS = [
  "I love this product, it is wonderful",
  "Terrible service, I am very disappointed",
  "The package arrived on Tuesday",
  "Absolutely fantastic experience",
  "This is the worst thing ever",
  "It works as described",
];

const CAR = {
  cylinders: 4,
  displacement_cu_in: 120,
  horsepower: 90,
  weight_lbs: 2400,
  acceleration_s: 15,
  model_year: 1980,
  origin: "Japan",
};

describe(
  "dashboard in headless Chromium after real traffic",
  { skip: !existsSync(CHROMIUM) && `${CHROMIUM} missing` },
  () => {
    let browser: Browser;
    // Registered before useInferline's hooks: the browser closes before the API does.
    after(async () => {
      await browser?.close();
    });
    const inferline = useInferline("dashboard", { env: ENV, worker: true });
    before(async () => {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: CHROMIUM_ARGS,
      });
    });

    it("panels show the traffic, charts draw, no console errors, retry works; saves the screenshot", async () => {
      const wait = { prefer: "wait=10" };
      const done: { id: string; label?: string; value?: number }[] = [];
      await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const r = await call(
            inferline.url,
            "POST",
            "/api/ml/sentiment",
            { text: `${TEXTS[i % TEXTS.length]} #${i}` },
            wait,
          );
          done.push({ id: r.body.job_id as string, label: (r.body.result as { label: string }).label });
        }),
      );
      await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          const r = await call(
            inferline.url,
            "POST",
            "/api/ml/cars-mpg",
            { ...CAR, weight_lbs: 2000 + i * 150 },
            wait,
          );
          done.push({ id: r.body.job_id as string, value: (r.body.result as { value: number }).value });
        }),
      );
      for (let i = 0; i < 20; i++) await call(inferline.url, "POST", "/api/ml/echo", { text: `e${i}` }, wait);
      for (let i = 0; i < 2; i++)
        // Failing once: a retry then completes, and its row leaves the list.
        await call(
          inferline.url,
          "POST",
          "/api/ml/echo",
          { text: `x${i}`, fail: "error", fail_attempts: 1 },
          wait,
        );
      // Ground truth for some: labels agree for most, values are off by a little.
      for (const [i, d] of done.entries()) {
        if (i % 3 !== 0) continue;
        const body =
          d.label !== undefined ? { label: i % 6 === 0 ? d.label : "neutral" } : { value: d.value! + 1.5 };
        assert.equal((await call(inferline.url, "POST", `/api/results/${d.id}/feedback`, body)).status, 201);
      }

      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const errors: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(m.text());
      });
      page.on("pageerror", (e) => errors.push(e.message));
      const res = await page.goto(`${inferline.url}/dashboard`);
      assert.equal(res?.status(), 200);
      await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });

      const metric = (name: string) => page.locator(`[data-metric="${name}"]`).first().textContent();
      await eventually(async () => Number(await metric("completed")) >= 62, 15_000, 250);
      assert.ok(Number(await metric("throughput")) > 0);
      assert.ok(Number(await metric("total_p50")) > 0);
      assert.ok(Number(await metric("total_p99")) > 0);
      assert.equal(await metric("workers"), "1");
      assert.match((await metric("error_rate")) ?? "", /^[1-9][0-9.]*%$/);
      assert.ok(Number(await metric("batch_avg")) >= 1);
      // 2 of 64 jobs failed: 3%, under the 5% that makes it degraded.
      assert.equal(await page.locator("#status").textContent(), "healthy");

      // Charts drew (uPlot's draw hook counts on each container).
      for (const id of ["throughput", "latency", "rates", "batch"]) {
        const chart = page.locator(`#chart-${id}`);
        assert.ok(Number(await chart.getAttribute("data-drawn")) >= 1, `${id} chart drew`);
        assert.equal(await chart.locator("canvas").count(), 1);
      }
      assert.equal(await page.locator("#workers tbody tr").count(), 1);
      assert.equal(await page.locator("#queues tbody tr").count(), 3);
      const models = (await page.locator("#models tbody").textContent()) ?? "";
      assert.match(models, /sentiment@1/);
      assert.match(models, /accuracy \d+\.\d%/);
      assert.match(models, /MAE 1\.50/);

      // Failed jobs are listed with their error.
      await page.waitForSelector("#failed tbody tr", { timeout: 15_000 });
      assert.match(
        (await page.locator("#failed tbody").textContent()) ?? "",
        /inference_failed: fail: injected error/,
      );

      // Pause stops a model's queue for every worker; the row then says so and offers Resume.
      const paused = page.waitForResponse((r) => r.url().endsWith("/api/admin/models/echo/pause"));
      await page.locator('#queues button[data-queue="echo"][data-action="pause"]').click();
      assert.equal((await paused).status(), 200);
      const resume = page.locator('#queues button[data-queue="echo"][data-action="resume"]');
      await resume.waitFor({ timeout: 15_000 });
      const health = await call(inferline.url, "GET", "/health");
      assert.equal((health.body.models as Record<string, { paused: boolean }>).echo?.paused, true);
      // Retry puts a failed job back in its queue. By keyboard, while echo is paused (the job then
      // waits): once its row leaves the list, the focus stays in the table's box.
      const retried = page.waitForResponse((r) => r.url().endsWith("/retry"));
      const retry = page.locator("#failed button[data-retry]").first();
      const retriedId = await retry.getAttribute("data-retry");
      await retry.focus();
      await page.keyboard.press("Enter");
      assert.equal((await retried).status(), 202);
      await page.locator(`#failed button[data-retry="${retriedId}"]`).waitFor({ state: "detached" });
      assert.equal(
        await page.evaluate(
          "document.activeElement && document.activeElement.getAttribute('aria-labelledby')",
        ),
        "failed-title",
      );

      const resumed = page.waitForResponse((r) => r.url().endsWith("/api/admin/models/echo/resume"));
      await resume.click();
      assert.equal((await resumed).status(), 200);
      await page
        .locator('#queues button[data-queue="echo"][data-action="pause"]')
        .waitFor({ timeout: 15_000 });

      // DASHBOARD_SCREENSHOT=docs/img/dashboard.png renews the picture in the docs.
      const shot = process.env.DASHBOARD_SCREENSHOT;
      if (shot) {
        mkdirSync(path.dirname(path.resolve(ROOT, shot)), { recursive: true });
        await page.screenshot({ path: path.resolve(ROOT, shot), fullPage: true });
      }
      assert.deepEqual(errors, []);
    });
  },
);

describe(
  "dashboard of a server that keeps no stats (METRICS_ENABLED=false)",
  { skip: !existsSync(CHROMIUM) && `${CHROMIUM} missing` },
  () => {
    let browser: Browser;
    after(async () => {
      await browser?.close();
    });
    const inferline = useInferline("dashboard-no-stats", {
      env: { MODELS: "echo", METRICS_ENABLED: "false", JOB_ATTEMPTS: "1" },
      worker: true,
    });
    before(async () => {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    });

    it("says so once instead of failing every poll; tells how many failed jobs it lists", async () => {
      await Promise.all(
        Array.from({ length: 22 }, (_, i) =>
          call(
            inferline.url,
            "POST",
            "/api/ml/echo",
            { text: `bad ${i}`, fail: "invalid" },
            { prefer: "wait=10" },
          ),
        ),
      );
      const page = await browser.newPage();
      const statsAsked: string[] = [];
      page.on("request", (r) => {
        if (r.url().includes("/api/stats")) statsAsked.push(r.url());
      });
      const pageErrors: string[] = [];
      page.on("pageerror", (e) => pageErrors.push(e.message));
      await page.goto(`${inferline.url}/dashboard`);
      await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
      assert.equal(await page.locator("#stats-off").isVisible(), true);
      assert.equal(await page.locator("[data-stats]:visible").count(), 0);
      await eventually(
        async () => /^updated /.test((await page.locator("#updated").textContent()) ?? ""),
        15_000,
        200,
      );
      assert.equal(await page.locator('[data-metric="workers"]').textContent(), "1");
      await eventually(
        async () => /^The newest 20 of 22 /.test((await page.locator("#failed-count").textContent()) ?? ""),
        15_000,
        200,
      );
      assert.equal(await page.locator("#failed tbody tr").count(), 20);
      // One try each for the tiles and the charts, then no more.
      const asked = statsAsked.length;
      assert.ok(asked <= 2, statsAsked.join(" "));
      await new Promise((r) => setTimeout(r, 3500));
      assert.equal(statsAsked.length, asked);
      assert.deepEqual(pageErrors, []);
    });
  },
);

describe(
  "dashboard session in headless Chromium",
  { skip: !existsSync(CHROMIUM) && `${CHROMIUM} missing` },
  () => {
    const keys = testKeys();
    let browser: Browser;
    let other: Server;
    after(async () => {
      await browser?.close();
      other?.close();
    });
    const inferline = useInferline("dashboard-session", {
      env: { ...keys.env, MODELS: "echo", MODEL_RELOAD_TIMEOUT_MS: "100" },
    });
    before(async () => {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    });

    it("a page on another port of the same host cannot act with the operator's session", async () => {
      const reload = `${inferline.url}/api/admin/models/reload`;
      // Same host, another port: the same site, so SameSite=Strict lets the cookie go along.
      other = createServer((_req, res) =>
        res
          .setHeader("content-type", "text/html")
          .end(
            `<script>fetch(${JSON.stringify(reload)}, {method: "POST", mode: "no-cors", credentials: "include"})` +
              `.catch(() => {}).finally(() => (document.title = "sent"));</script>`,
          ),
      ).listen(0, "127.0.0.1");
      await new Promise((r) => other.once("listening", r));
      const otherUrl = `http://127.0.0.1:${(other.address() as { port: number }).port}/`;

      const page = await browser.newPage();
      await page.goto(`${inferline.url}/dashboard/login`);
      await page.fill("#key", keys.admin);
      await Promise.all([page.waitForURL(`${inferline.url}/dashboard`), page.click("button[type=submit]")]);

      // The dashboard's own requests still act (same origin).
      const own = await page.evaluate(async (url) => (await fetch(url, { method: "POST" })).status, reload);
      assert.ok(own !== 401 && own !== 403, `own page: status ${own}`);

      // The browser hides the answer from that page; the API's request counter tells what it was.
      await page.goto(otherUrl);
      await page.waitForFunction("document.title === 'sent'");
      const answered = async (status: number) => {
        const text = await (await fetch(`${inferline.url}/metrics`)).text();
        const line = text
          .split("\n")
          .find((l) =>
            l.startsWith(
              `inferline_http_requests_total{route="/api/admin/models/reload",method="POST",status="${status}"`,
            ),
          );
        return Number(line?.split(" ").pop() ?? 0);
      };
      await eventually(async () => (await answered(403)) === 1, 10_000, 100);
      assert.equal(await answered(own), 1);
    });

    it("Sign out ends the session on the server: a copy of its cookie is refused", async () => {
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(`${inferline.url}/dashboard/login`);
        await page.fill("#key", keys.admin);
        await Promise.all([page.waitForURL(`${inferline.url}/dashboard`), page.click("button[type=submit]")]);
        const copied = (await context.cookies()).find((c) => c.name === "inferline_session")?.value;
        assert.ok(copied, "signed in");
        const failedJobs = () =>
          call(inferline.url, "GET", "/api/admin/jobs/failed", undefined, {
            cookie: `inferline_session=${copied}`,
          });
        assert.equal((await failedJobs()).status, 200);

        await Promise.all([
          page.waitForURL(`${inferline.url}/dashboard/login`),
          page.getByRole("button", { name: "Sign out" }).click(),
        ]);
        assert.equal((await context.cookies()).filter((c) => c.name === "inferline_session").length, 0);
        // The cookie copied before signing out (from another machine, say) no longer works.
        const refused = await failedJobs();
        assert.equal(refused.status, 401);
        assert.equal((refused.body.error as { code: string }).code, "unauthorized");
        // Nor does putting it back into the browser.
        await context.addCookies([{ name: "inferline_session", value: copied, url: inferline.url }]);
        await page.goto(`${inferline.url}/dashboard`);
        assert.equal(page.url(), `${inferline.url}/dashboard/login`);
      } finally {
        await context.close();
      }
    });

    it("a session that ends while the page is open leads to the sign-in page, which says so", async () => {
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(`${inferline.url}/dashboard/login`);
        assert.equal(await page.getByRole("alert").count(), 0);
        await page.fill("#key", keys.admin);
        await Promise.all([page.waitForURL(`${inferline.url}/dashboard`), page.click("button[type=submit]")]);
        const cookie = (await context.cookies()).find((c) => c.name === "inferline_session")?.value;
        assert.ok(cookie, "signed in");
        // Signed out from elsewhere (another tab, or a client holding the same session).
        const out = await fetch(`${inferline.url}/dashboard/logout`, {
          method: "POST",
          headers: { cookie: `inferline_session=${cookie}` },
          redirect: "manual",
        });
        assert.equal(out.status, 303);
        await page.waitForURL(`${inferline.url}/dashboard/login?ended=1`, { timeout: 15_000 });
        assert.match((await page.getByRole("alert").textContent()) ?? "", /session has ended/);
      } finally {
        await context.close();
      }
    });
  },
);

describe(
  "dashboard through a Redis outage and an API restart",
  { skip: !existsSync(CHROMIUM) && `${CHROMIUM} missing` },
  () => {
    const prefix = uniquePrefix("dashboard-outage");
    let browser: Browser;
    let redis: OwnRedis;
    let api: ApiHandle | undefined;
    const config = (port = "0") =>
      testConfig(prefix, {
        REDIS_URL: redis.url,
        MODELS: "echo",
        REDIS_COMMAND_TIMEOUT_MS: "300",
        PORT: port,
      });
    before(async () => {
      redis = await ownRedis({ aof: false });
      api = await startApi(config());
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    });
    after(async () => {
      await browser?.close();
      await api?.close();
      await cleanupPrefix(prefix, redis.url).catch(() => {});
      await redis?.destroy();
    });

    it("says what failed, and no stale status, until the service is back", async () => {
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (e) => pageErrors.push(e.message));
      const url = api!.url;
      await page.goto(`${url}/dashboard`);
      await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
      const text = async (selector: string) => (await page.locator(selector).textContent()) ?? "";
      assert.equal(await text("#status"), "degraded"); // no worker
      const stale = (selector: string) => page.locator(`${selector}[data-stale]`).count();
      const throughputTile = '.tile:has([data-metric="throughput"])';
      const queuesBox = ".scroll:has(#queues)";
      assert.equal(await stale(""), 0, "nothing stale while every poll succeeds");

      // Redis away: /health reports it; the stats poll shows the server's reason, not a script error.
      await redis.stop("SIGKILL");
      await eventually(async () => (await text("#status")) === "unhealthy", 15_000, 200);
      const failed = await eventually(
        async () => {
          const t = await text("#updated");
          return t.startsWith("update failed") && t;
        },
        15_000,
        100,
      );
      assert.match(failed, /Redis/);
      assert.doesNotMatch(failed, /undefined|TypeError|Cannot read/);
      // The stats could not be read: their tiles are marked stale; /health answered, but could
      // not read the queues either.
      await eventually(async () => (await stale(throughputTile)) === 1, 15_000, 100);
      await eventually(async () => (await stale(queuesBox)) === 1, 15_000, 100);
      assert.equal(await stale(".reasons"), 0, "the reasons /health gave are current");
      await redis.start();
      await eventually(async () => (await text("#status")) === "degraded", 15_000, 200);
      await eventually(async () => (await stale("")) === 0, 15_000, 200);
      assert.match(await text("#updated"), /^updated /);

      // The API away: the badge no longer claims the last status it read.
      const port = new URL(url).port;
      await api!.close();
      api = undefined;
      await eventually(async () => (await text("#status")) === "unknown", 15_000, 200);
      await eventually(
        async () => (await text("#updated")) === "update failed: the API could not be reached",
        15_000,
        200,
      );
      await eventually(async () => (await stale(queuesBox)) === 1, 15_000, 100);
      await eventually(async () => (await stale(throughputTile)) === 1, 15_000, 100);
      api = await startApi(config(port));
      await eventually(async () => (await text("#status")) === "degraded", 15_000, 200);
      await eventually(async () => (await stale("")) === 0, 15_000, 200);
      assert.deepEqual(pageErrors, []);
    });
  },
);

describe(
  "dashboard signed in while Redis is away",
  { skip: !existsSync(CHROMIUM) && `${CHROMIUM} missing` },
  () => {
    const prefix = uniquePrefix("dashboard-redis-away");
    const keys = testKeys();
    let browser: Browser;
    let redis: OwnRedis;
    let api: ApiHandle | undefined;
    before(async () => {
      // With its data kept: the session and the jobs outlive the outage.
      redis = await ownRedis({ aof: true });
      api = await startApi(
        testConfig(prefix, {
          ...keys.env,
          REDIS_URL: redis.url,
          MODELS: "echo",
          REDIS_COMMAND_TIMEOUT_MS: "300",
          RETRY_AFTER_UNAVAILABLE_SECONDS: "1",
        }),
      );
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    });
    after(async () => {
      await browser?.close();
      await api?.close();
      await redis?.destroy();
    });

    it("keeps the last queue and worker reading, marked stale; a page load says why, then comes back", async () => {
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (e) => pageErrors.push(e.message));
      const url = api!.url;
      await page.goto(`${url}/dashboard/login`);
      await page.fill("#key", keys.admin);
      await Promise.all([page.waitForURL(`${url}/dashboard`), page.click("button[type=submit]")]);
      await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
      // Two jobs wait (no worker): the queue panels read 2.
      for (const n of [1, 2]) {
        const r = await call(
          url,
          "POST",
          "/api/ml/echo",
          { text: `waiting ${n}` },
          { authorization: `Bearer ${keys.admin}` },
        );
        assert.equal(r.status, 202);
      }
      const depth = page.locator('[data-metric="queue_depth"]');
      await eventually(async () => (await depth.textContent()) === "2", 15_000, 200);
      const text = async (selector: string) => (await page.locator(selector).textContent()) ?? "";
      const stale = (selector: string) => page.locator(`${selector}[data-stale]`).count();

      await redis.stop("SIGKILL");
      await eventually(async () => (await text("#status")) === "unhealthy", 15_000, 200);
      // /health answers without Redis, but its zeros for queues and workers are no reading.
      await eventually(async () => (await stale(".tile:has([data-metric=queue_depth])")) === 1, 15_000, 100);
      assert.equal(await depth.textContent(), "2");
      assert.equal(await stale(".scroll:has(#queues)"), 1);
      assert.equal(await stale(".scroll:has(#workers)"), 1);
      assert.equal(await page.locator("#queues tbody tr").count(), 1, "the echo row stays");

      // Opening the page needs the session checked, in Redis: a page saying so, not JSON.
      const away = await page.reload();
      assert.equal(away?.status(), 503);
      assert.match(away?.headers()["content-type"] ?? "", /^text\/html/);
      assert.match(await text("main [role=alert]"), /Redis.*\(503 service_unavailable\)/);
      assert.equal(await page.locator('meta[http-equiv="refresh"]').getAttribute("content"), "1");
      // It loads again by itself: once Redis is back, it is the dashboard.
      await redis.start();
      await page.waitForSelector("body[data-ready=true]", { timeout: 20_000 });
      await eventually(async () => (await stale("")) === 0, 15_000, 200);
      assert.equal(await depth.textContent(), "2");
      assert.deepEqual(pageErrors, []);
    });
  },
);

describe(
  "dashboard Retry when the API cannot retry",
  { skip: !existsSync(CHROMIUM) && `${CHROMIUM} missing` },
  () => {
    const prefix = uniquePrefix("dashboard-retry");
    const env = (url: string) => ({ REDIS_URL: url, MODELS: "echo", JOB_ATTEMPTS: "1" });
    let browser: Browser;
    let redis: OwnRedis;
    let api: ApiHandle | undefined;
    let worker: Spawned | undefined;
    before(async () => {
      redis = await ownRedis({ aof: false });
      api = await startApi(testConfig(prefix, { ...env(redis.url), REDIS_COMMAND_TIMEOUT_MS: "300" }));
      worker = await spawnWorker(testEnv(prefix, env(redis.url)));
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    });
    after(async () => {
      await browser?.close();
      if (worker) await stop(worker);
      await api?.close();
      await redis?.destroy();
    });

    it("shows the error code and message the API answered, and the button can be pressed again", async () => {
      const url = api!.url;
      const failed = await call(
        url,
        "POST",
        "/api/ml/echo",
        { text: "x", fail: "error" },
        { prefer: "wait=10" },
      );
      assert.equal(failed.body.status, "failed");
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (e) => pageErrors.push(e.message));
      await page.goto(`${url}/dashboard`);
      await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
      const button = page.locator(`#failed button[data-retry="${String(failed.body.job_id)}"]`);
      await button.waitFor({ timeout: 15_000 });
      const alert = page.locator("#failed-error");
      assert.equal(await alert.isVisible(), false);

      // Redis away: the retry is answered 503, and the operator is told so next to the list.
      await redis.stop("SIGKILL");
      const answered = page.waitForResponse((r) => r.url().endsWith("/retry"));
      await button.click();
      assert.equal((await answered).status(), 503);
      await alert.waitFor({ state: "visible", timeout: 5_000 });
      const text = (await alert.textContent()) ?? "";
      assert.match(
        text,
        new RegExp(
          `^Retry of ${String(failed.body.job_id).replace(".", "\\.")} failed: 503 service_unavailable: .*Redis`,
        ),
      );
      assert.equal(await alert.getAttribute("role"), "alert");
      assert.equal(await button.isEnabled(), true);
      assert.equal(page.url(), `${url}/dashboard`);
      assert.deepEqual(pageErrors, []);
    });
  },
);

describe(
  "dashboard shows what jobs and models say as text, never as markup",
  { skip: !existsSync(CHROMIUM) && `${CHROMIUM} missing` },
  () => {
    let browser: Browser;
    after(async () => {
      await browser?.close();
    });
    const inferline = useInferline("dashboard-escape", { env: { MODELS: "echo", JOB_ATTEMPTS: "1" } });
    before(async () => {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    });

    it("a failed job's error message with HTML in it is shown as written and runs nothing", async () => {
      // A job whose failure reason holds markup, as a model's own error text might.
      const markup = `<img src=x onerror="document.body.dataset.pwned='1'"><b>bold</b>`;
      const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
      const queue = new Queue(queueName("echo"), { connection, prefix: inferline.prefix });
      const jobId = newJobId("echo");
      const data = { model: "echo", version: "1", input: {}, priority: "normal", requestId: "r-1" };
      await queue.add("predict", data, { jobId, attempts: 1 });
      const worker = new Worker(
        queueName("echo"),
        async () => {
          throw new Error(`[inference_failed] ${markup}`);
        },
        { connection, prefix: inferline.prefix },
      );
      await eventually(async () => (await queue.getJobState(jobId)) === "failed", 10_000);
      await worker.close();
      await queue.close();
      connection.disconnect();

      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`${inferline.url}/dashboard`);
      await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
      const row = page.locator(`#failed tr:has(button[data-retry="${jobId}"])`);
      await row.waitFor({ timeout: 15_000 });
      assert.match((await row.textContent()) ?? "", /inference_failed: <img src=x onerror=.*<b>bold<\/b>/);
      assert.equal(await page.locator("#failed img, #failed b").count(), 0);
      assert.equal(await page.getByRole("button", { name: `Retry job ${jobId}`, exact: true }).count(), 1);
      assert.equal(await page.locator("body").getAttribute("data-pwned"), null);
      assert.deepEqual(errors, []);
    });
  },
);

describe(
  "dashboard by keyboard while it polls",
  { skip: !existsSync(CHROMIUM) && `${CHROMIUM} missing` },
  () => {
    let browser: Browser;
    after(async () => {
      await browser?.close();
    });
    const inferline = useInferline("dashboard-keyboard", { env: { MODELS: "echo" } });
    before(async () => {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    });

    it("a focused Pause button keeps the focus across polls, and Enter pauses then resumes", async () => {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`${inferline.url}/dashboard`);
      await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
      const focused = () =>
        page.evaluate<string>(`(() => {
          const e = document.activeElement;
          return e && e.tagName === "BUTTON" ? e.dataset.queue + ":" + e.dataset.action : String(e && e.tagName);
        })()`);
      for (let i = 0; i < 10 && (await focused()) !== "echo:pause"; i++) await page.keyboard.press("Tab");
      assert.equal(await focused(), "echo:pause", "Tab reaches the Pause button");
      // Its name says which queue, as a screen reader announces it out of the table.
      assert.equal(await page.getByRole("button", { name: "Pause echo", exact: true }).count(), 1);

      // Two more readings of /health redraw the queues table.
      for (let i = 0; i < 2; i++)
        await page.waitForResponse((r) => r.url().endsWith("/health"), { timeout: 15_000 });
      await page.evaluate("new Promise((r) => requestAnimationFrame(r))");
      assert.equal(await focused(), "echo:pause", "the focus stayed on the button");

      const paused = page.waitForResponse((r) => r.url().endsWith("/api/admin/models/echo/pause"));
      await page.keyboard.press("Enter");
      assert.equal((await paused).status(), 200);
      // The row now offers Resume, and the focus is on it: Enter again resumes.
      await eventually(async () => (await focused()) === "echo:resume", 15_000, 100);
      assert.equal(await page.getByRole("button", { name: "Resume echo", exact: true }).count(), 1);
      const resumed = page.waitForResponse((r) => r.url().endsWith("/api/admin/models/echo/resume"));
      await page.keyboard.press("Enter");
      assert.equal((await resumed).status(), 200);
      await eventually(async () => (await focused()) === "echo:pause", 15_000, 100);
      assert.deepEqual(errors, []);
    });
  },
);

describe("dashboard on a narrow screen", { skip: !existsSync(CHROMIUM) && `${CHROMIUM} missing` }, () => {
  let browser: Browser;
  after(async () => {
    await browser?.close();
  });
  const inferline = useInferline("dashboard-narrow", { env: { MODELS: "echo" } });
  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  // How far the page is wider than the screen, and the widest chart against its box.
  const overflow = `(() => ({
      page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
      charts: Math.max(...[...document.querySelectorAll(".chart")].map(
        (c) => c.querySelector(".uplot").getBoundingClientRect().width - c.getBoundingClientRect().width)),
    }))()`;
  const fits = async (page: Page) => {
    const o = await page.evaluate<{ page: number; charts: number }>(overflow);
    return o.page <= 0 && o.charts <= 0.5 ? o : undefined;
  };

  it("a phone-wide window scrolls only down: charts fit, wide tables scroll in their box", async () => {
    const phone = await browser.newPage({ viewport: { width: 360, height: 740 } });
    await phone.goto(`${inferline.url}/dashboard`);
    await phone.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
    await phone.locator("#chart-batch canvas").waitFor();
    await eventually(() => fits(phone), 5_000, 100);
    const table = await phone.evaluate<{ scroller: number; table: number }>(`(() => ({
        scroller: document.querySelector("#queues").parentElement.clientWidth,
        table: document.querySelector("#queues").scrollWidth,
      }))()`);
    assert.ok(table.table > table.scroller, "the queues table is wider than the screen and scrolls");

    // A wide window narrowed afterwards: the charts drawn wide are redrawn to fit.
    const wide = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await wide.goto(`${inferline.url}/dashboard`);
    await wide.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
    await wide.locator("#chart-batch canvas").waitFor();
    await wide.setViewportSize({ width: 360, height: 740 });
    await eventually(() => fits(wide), 5_000, 100);
  });
});

describe(
  "dashboard when the API stops answering",
  { skip: !existsSync(CHROMIUM) && `${CHROMIUM} missing` },
  () => {
    let browser: Browser;
    let proxy: NetServer | undefined;
    const sockets = new Set<Socket>();
    after(async () => {
      await browser?.close();
      for (const s of sockets) s.destroy();
      proxy?.close();
    });
    const inferline = useInferline("dashboard-hung", { env: { MODELS: "echo" } });
    before(async () => {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    });

    it("an API that takes requests and never answers is reported, its data marked stale", async () => {
      // A TCP hop in front of the API that can swallow requests, as a hung proxy does.
      let hung = false;
      const target = new URL(inferline.url);
      proxy = createNetServer((client) => {
        const upstream = connect(Number(target.port), target.hostname);
        sockets.add(client).add(upstream);
        client.on("data", (chunk) => void (hung || upstream.write(chunk)));
        upstream.on("data", (chunk) => void client.write(chunk));
        for (const [a, b] of [
          [client, upstream],
          [upstream, client],
        ] as const)
          a.on("close", () => b.destroy()).on("error", () => b.destroy());
      }).listen(0, "127.0.0.1");
      await new Promise((r) => proxy!.once("listening", r));
      const url = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;

      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (e) => pageErrors.push(e.message));
      await page.goto(`${url}/dashboard`);
      await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
      const text = async (selector: string) => (await page.locator(selector).textContent()) ?? "";
      assert.equal(await text("#status"), "degraded");

      hung = true;
      await eventually(
        async () => (await text("#updated")) === "update failed: the API did not answer within 8 s",
        20_000,
        200,
      );
      assert.equal(await text("#status"), "unknown");
      await eventually(async () => (await page.locator(".scroll:has(#queues)[data-stale]").count()) === 1);

      // Answering again: connections the hop swallowed are cut, the page reconnects and recovers.
      hung = false;
      for (const s of sockets) s.destroy();
      await eventually(async () => (await text("#status")) === "degraded", 20_000, 200);
      await eventually(async () => (await page.locator("[data-stale]").count()) === 0, 20_000, 200);
      assert.deepEqual(pageErrors, []);
    });
  },
);
