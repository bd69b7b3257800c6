import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { testEnv } from "../support/config.js";
import { freePort } from "../support/http.js";
import { CLI, ROOT, spawnCli, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import { getOnce, load } from "./support/load.js";
import { startNginx, type LocalNginx } from "./support/nginx.js";

const run = promisify(execFile);
const SCRIPT = path.join(ROOT, "scripts", "blue-green.sh");

void describe("scripts/blue-green.sh with real nginx and two local API sets", () => {
  const prefix = uniquePrefix("bluegreen");
  const work = mkdtempSync(path.join(tmpdir(), "inferline-bg-"));
  const pidFile = path.join(work, "green.pids");
  const blue: { port: number; proc: Spawned }[] = [];
  let greenPorts: number[] = [];
  let nginx: LocalNginx;
  let env: Record<string, string>;

  before(async () => {
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      blue.push({
        port,
        proc: spawnCli(["api", "--port", String(port)], testEnv(prefix, { LOG_LEVEL: "info" })),
      });
    }
    await Promise.all(blue.map((b) => b.proc.waitForLine((l) => l.event === "api_started", 30_000)));
    greenPorts = [await freePort(), await freePort()];
    nginx = await startNginx(
      await freePort(),
      blue.map((b) => `127.0.0.1:${b.port}`),
    );
    // The "release" of the green colour: (re)starts its API processes in the background. With
    // GREEN_BROKEN=1 they come up with an unreachable Redis: alive, never ready.
    const start = [
      `if [ -f ${pidFile} ]; then`,
      `  for p in $(cat ${pidFile}); do kill "$p" 2>/dev/null; while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done`,
      `  rm -f ${pidFile}`,
      `fi`,
      `for s in $BG_SERVERS; do`,
      `  if [ "$GREEN_BROKEN" = 1 ]; then export REDIS_URL=redis://127.0.0.1:1; fi`,
      `  nohup ${process.execPath} ${CLI} api --port "\${s##*:}" >>${work}/green.log 2>&1 &`,
      `  echo $! >> ${pidFile}`,
      `done`,
    ].join("\n");
    env = {
      ...process.env,
      ...testEnv(prefix, { LOG_LEVEL: "warn" }),
      GREEN_BROKEN: "0",
      BG_BLUE_SERVERS: blue.map((b) => `127.0.0.1:${b.port}`).join(" "),
      BG_GREEN_SERVERS: greenPorts.map((p) => `127.0.0.1:${p}`).join(" "),
      BG_START_CMD: start,
      BG_UPSTREAM_FILE: nginx.upstreamFile,
      BG_STATE_DIR: path.join(work, "state"),
      BG_READY_TIMEOUT: "8",
      NGINX_TEST_CMD: `${nginx.command} -t -q`,
      NGINX_RELOAD_CMD: `${nginx.command} -s reload`,
    };
  });

  after(async () => {
    await run("sh", ["-c", `[ -f ${pidFile} ] && xargs kill < ${pidFile} 2>/dev/null; true`]);
    await nginx?.stop();
    await Promise.all(blue.map((b) => stop(b.proc)));
    rmSync(work, { recursive: true, force: true });
    await cleanupPrefix(prefix);
  });

  const bg = (cmd: string, extra: Record<string, string> = {}) =>
    run(SCRIPT, [cmd], { env: { ...env, ...extra }, encoding: "utf8" });

  /** Which ports served the next `n` requests through nginx. */
  async function servedBy(n: number): Promise<Set<number>> {
    // nginx's old worker processes finish what they hold after a reload; then only new ones serve.
    await new Promise((r) => setTimeout(r, 500));
    const marker = `probe-${Math.random().toString(36).slice(2)}`;
    for (let i = 0; i < n; i++) {
      const r = await fetch(`${nginx.url}/api/models`, { headers: { "x-request-id": `${marker}-${i}` } });
      assert.equal(r.status, 200);
    }
    await new Promise((r) => setTimeout(r, 100));
    const ports = nginx
      .accessLog()
      .filter((l) => String(l.request_id).startsWith(marker))
      .map((l) => Number(String(l.upstream).split(":").pop()));
    assert.equal(ports.length, n);
    return new Set(ports);
  }

  void it("status reports blue active and green not running", async () => {
    const { stdout } = await bg("status");
    assert.match(stdout, /^active: blue$/m);
    for (const b of blue) assert.match(stdout, new RegExp(`^blue 127.0.0.1:${b.port} ready$`, "m"));
    for (const p of greenPorts) assert.match(stdout, new RegExp(`^green 127.0.0.1:${p} not-ready$`, "m"));
  });

  void it("deploy starts green, waits for ready, switches without failed requests; rollback returns to blue", async () => {
    let switching = true;
    const during = load(
      60_000,
      4,
      // New connections each time: a client reusing a keep-alive connection across an nginx
      // reload must retry on a reset, like any HTTP client; what is measured here is nginx.
      () => getOnce(`${nginx.url}/api/models`),
      undefined,
      () => !switching,
    );
    try {
      await bg("deploy");
      assert.deepEqual([...(await servedBy(20))].sort(), [...greenPorts].sort());
      assert.equal(readFileSync(path.join(env.BG_STATE_DIR!, "active"), "utf8").trim(), "green");
      // Blue keeps running for the rollback.
      for (const b of blue)
        assert.equal((await fetch(`http://127.0.0.1:${b.port}/health/ready`)).status, 200);

      await bg("rollback");
      assert.deepEqual([...(await servedBy(20))].sort(), blue.map((b) => b.port).sort());
    } finally {
      switching = false;
    }
    const traffic = await during;
    assert.ok(traffic.total > 50, `traffic during the switches: ${traffic.total}`);
    assert.equal(traffic.failed, 0, JSON.stringify(traffic.byStatus));
  });

  void it("refuses to switch to a colour that is not ready, and blue keeps serving", async () => {
    const before = readFileSync(nginx.upstreamFile, "utf8");
    await assert.rejects(bg("deploy", { GREEN_BROKEN: "1" }), (err: Error & { stderr?: string }) => {
      assert.match(err.stderr ?? "", /refusing to switch: green is not ready/);
      return true;
    });
    assert.equal(readFileSync(nginx.upstreamFile, "utf8"), before);
    assert.equal(readFileSync(path.join(env.BG_STATE_DIR!, "active"), "utf8").trim(), "blue");
    assert.deepEqual([...(await servedBy(10))].sort(), blue.map((b) => b.port).sort());
    // …and a rollback towards the broken colour is refused too.
    await assert.rejects(bg("rollback"), /refusing to roll back/);
  });
});
