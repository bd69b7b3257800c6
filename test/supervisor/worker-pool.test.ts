import assert from "node:assert/strict";
import { createServer } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { after, describe, it } from "node:test";
import { testEnv } from "../support/config.js";
import { call, canListen, eventually, freePort } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { CLI, ROOT, spawnCli, stop } from "../support/processes.js";

/**
 * A supervisor process of its own running a WorkerPool of real worker processes: SIGUSR2 adds a
 * worker, SIGUSR1 drains the newest, SIGTERM drains them all and exits.
 */
function poolScript(dir: string): string {
  const script = path.join(dir, "pool.mjs");
  const module = (p: string) => JSON.stringify(pathToFileURL(path.join(ROOT, p)).href);
  writeFileSync(
    script,
    `import { Supervisor } from ${module("src/supervisor/supervisor.ts")};
    import { WorkerPool } from ${module("src/supervisor/worker-pool.ts")};
    const log = (o) => console.log(JSON.stringify(o));
    const logger = { info: log, warn: log, error: log };
    const supervisor = new Supervisor({ entry: ${JSON.stringify(CLI)}, env: process.env,
      restartBackoffMs: 1000, stopTimeoutMs: 30000, logger });
    const pool = new WorkerPool(supervisor, ["worker"], Number(process.env.WORKER_METRICS_PORT), "127.0.0.1");
    let target = 1;
    const scale = (n) => { target = n; void pool.scaleTo(n).then(() => log({ event: "scaled", target: n })); };
    scale(1);
    process.on("SIGUSR2", () => scale(target + 1));
    process.on("SIGUSR1", () => scale(target - 1));
    process.on("SIGTERM", () => void pool.scaleTo(0).then(() => pool.settled()).then(() => supervisor.stop()).then(() => process.exit(0)));\n`,
  );
  return script;
}

describe("worker pool metrics ports", () => {
  const inferline = useInferline("pool-ports", { env: { MODELS: "echo" } });
  const dir = mkdtempSync(path.join(tmpdir(), "inferline-pool-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const spawnPool = (base: number) =>
    spawnCli(
      [],
      testEnv(inferline.prefix, {
        MODELS: "echo",
        LOG_LEVEL: "info",
        WORKER_CONCURRENCY: "1",
        WORKER_METRICS_PORT: String(base),
      }),
      { node: ["--import", "tsx", poolScript(dir)] },
    );

  it("a worker started while a draining one still holds a port gets a free port of its own", async () => {
    let base = await freePort();
    while (!(await canListen(base + 1)) || !(await canListen(base + 2))) base = await freePort();
    const proc = spawnPool(base);
    const listening = (pid: unknown) =>
      proc.waitForLine(
        (l) => l.pid === pid && /^metrics_(listening|port_in_use)$/.test(String(l.event)),
        30_000,
      );
    const started = (n: number) =>
      eventually(async () => proc.lines.filter((l) => l.event === "worker_started")[n - 1], 30_000);
    try {
      const first = await started(1);
      assert.equal((await listening(first.pid)).port, base);
      process.kill(proc.proc.pid!, "SIGUSR2");
      const second = await started(2);
      const secondPort = (await listening(second.pid)).port;
      assert.equal(secondPort, base + 1);

      // One long job in each worker (one job at a time each): the newest drains for seconds.
      const ids: string[] = [];
      for (const n of [1, 2]) {
        const r = await call(inferline.url, "POST", "/api/ml/echo", { text: `long ${n}`, sleep_ms: 10_000 });
        assert.equal(r.status, 202, JSON.stringify(r.body));
        ids.push(r.body.job_id as string);
      }
      for (const id of ids) await proc.waitForLine((l) => l.event === "job_started" && l.job_id === id);
      process.kill(proc.proc.pid!, "SIGUSR1");
      await proc.waitForLine((l) => l.event === "worker_draining" && l.pid === second.pid);

      // A new worker while the drained one still serves its metrics on its port.
      process.kill(proc.proc.pid!, "SIGUSR2");
      const third = await started(3);
      const line = await listening(third.pid);
      assert.equal(line.event, "metrics_listening", JSON.stringify(line));
      assert.ok(![base, secondPort].includes(line.port as number), `port ${String(line.port)}`);
      assert.equal(
        proc.lines.some((l) => l.event === "child_stopped" && l.child === "worker-2"),
        false,
        "the drained worker was still running",
      );
      // Its line names the port it serves on.
      const res = await fetch(`http://127.0.0.1:${String(line.port)}/metrics`);
      assert.equal(res.status, 200);
      assert.match(await res.text(), /role="worker"/);

      // Nothing was lost meanwhile.
      await eventually(
        async () => {
          for (const id of ids) {
            const r = await call(inferline.url, "GET", `/api/results/${id}`);
            if (r.body.status !== "completed") return false;
          }
          return true;
        },
        30_000,
        250,
      );
    } finally {
      await stop(proc, 30_000);
    }
  });

  it("a worker whose port another program holds gets the next free one", async () => {
    let base = await freePort();
    while (!(await canListen(base + 1))) base = await freePort();
    const other = createServer();
    await new Promise<void>((r) => other.listen(base, "127.0.0.1", r));
    const proc = spawnPool(base);
    try {
      const line = await proc.waitForLine(
        (l) => /^metrics_(listening|port_in_use)$/.test(String(l.event)),
        30_000,
      );
      assert.equal(line.event, "metrics_listening", JSON.stringify(line));
      assert.equal(line.port, base + 1);
    } finally {
      await stop(proc, 30_000);
      other.close();
    }
  });
});
