import assert from "node:assert/strict";
import { createServer, type AddressInfo } from "node:net";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { testEnv } from "../support/config.js";
import { eventually, freePort } from "../support/http.js";
import { localRedisEnv } from "../support/local-redis-env.js";
import { alive, spawnCli, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, ownRedis, uniquePrefix } from "../support/redis.js";

/** The pid of the redis-server at `url`, as it reports it. */
async function redisPid(url: string): Promise<number> {
  const client = new Redis(url);
  try {
    const info = await client.info("server");
    return Number(/process_id:(\d+)/.exec(info)?.[1]);
  } finally {
    client.disconnect();
  }
}

/** Resolves with the exit, or undefined if the process is still running after `ms`. */
async function exitWithin<T>(exited: Promise<T>, ms: number): Promise<T | undefined> {
  const ac = new AbortController();
  try {
    return await Promise.race([exited, sleep(ms, undefined, { signal: ac.signal }).catch(() => undefined)]);
  } finally {
    ac.abort();
  }
}

/** Kills any process that logged through `proc` (its children) and is still running. */
function killLeftovers(proc: Spawned): void {
  const pids = new Set(proc.lines.map((l) => l.pid).filter((p): p is number => typeof p === "number"));
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
}

function onPath(binary: string): string {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, binary))) return path.join(dir, binary);
  }
  throw new Error(`${binary} is not on PATH`);
}

describe("inferline start: stopping", () => {
  it("SIGTERM while Redis does not answer: the supervisor still stops its children and exits", async () => {
    const redis = await ownRedis({ aof: false });
    const proc = spawnCli(
      ["start", "--workers", "1"],
      testEnv(uniquePrefix("start-frozen"), {
        REDIS_URL: redis.url,
        MODELS: "echo",
        LOG_LEVEL: "info",
        AUTOSCALE_INTERVAL_MS: "200",
        REDIS_COMMAND_TIMEOUT_MS: "1000",
        WORKER_SHUTDOWN_TIMEOUT_MS: "2000",
        SHUTDOWN_TIMEOUT_MS: "1000",
      }),
    );
    let frozen: number | undefined;
    try {
      await proc.waitForLine((l) => l.event === "worker_started", 30_000);
      await proc.waitForLine((l) => l.event === "autoscaler_started");
      frozen = await redisPid(redis.url);
      process.kill(frozen, "SIGSTOP");
      // Long enough for an autoscaler reading to be waiting on the frozen Redis.
      await sleep(1000);
      proc.kill("SIGTERM");
      // A bound for "did not hang", far above what the shutdown steps' deadlines add up to.
      const exit = await exitWithin(proc.exited, 45_000);
      assert.ok(exit, "the supervisor exited");
      assert.equal(exit.code, 0);
      assert.ok(proc.lines.some((l) => l.event === "child_stopped" && l.child === "api"));
      assert.ok(proc.lines.some((l) => l.event === "child_stopped" && l.child === "worker-1"));
    } finally {
      if (frozen) process.kill(frozen, "SIGCONT");
      await stop(proc);
      killLeftovers(proc);
      await redis.destroy();
    }
  });

  it("SIGTERM while start is still launching Redis: exits 0 and leaves no redis-server behind", async () => {
    // A redis-server that takes a second to come up, and says when it was launched (its pid).
    const bin = mkdtempSync(path.join(tmpdir(), "inferline-bin-"));
    const marker = path.join(bin, "launched");
    writeFileSync(
      path.join(bin, "redis-server"),
      `#!/bin/sh\necho $$ > ${marker}\nsleep 1\nexec ${onPath("redis-server")} "$@"\n`,
    );
    chmodSync(path.join(bin, "redis-server"), 0o755);
    const local = await localRedisEnv("start-early", { PATH: `${bin}:${process.env.PATH ?? ""}` });
    const proc = spawnCli(["start", "--workers", "1"], { ...local.env, LOG_LEVEL: "info" });
    let launched: number | undefined;
    try {
      launched = await eventually(
        async () => existsSync(marker) && Number(readFileSync(marker, "utf8")),
        30_000,
      );
      proc.kill("SIGTERM");
      const exit = await proc.exited;
      assert.equal(exit.code, 0, proc.stderr().slice(-2000));
      assert.equal(alive(launched), false, "its redis-server stopped with it");
      assert.equal(await local.answers(), false);
      assert.ok(!proc.lines.some((l) => l.event === "api_started" || l.event === "worker_started"));
    } finally {
      await stop(proc);
      if (launched && alive(launched)) process.kill(launched, "SIGKILL");
      killLeftovers(proc);
      await local.cleanup();
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it("Ctrl-C just after the children are launched, while they still load: exits 0, every child clean", async () => {
    const prefix = uniquePrefix("start-soon");
    const proc = spawnCli(["start", "--workers", "2"], {
      ...testEnv(prefix, { PORT: String(await freePort()) }),
      LOG_LEVEL: "info",
    });
    try {
      // Launched, but not yet started: their modules are still loading.
      await proc.waitForLine((l) => l.event === "autoscaler_started", 60_000);
      proc.kill("SIGINT");
      const exit = await proc.exited;
      assert.equal(exit.code, 0, proc.stderr().slice(-2000));
      assert.ok(!proc.lines.some((l) => l.event === "stop_unclean"), "no child counted as killed");
      const stopped = proc.lines.filter((l) => l.event === "child_stopped");
      assert.equal(stopped.length, 3, JSON.stringify(stopped));
      // Each finished its own stop, or had its SIGTERM before its first line ran.
      for (const line of stopped)
        assert.ok(
          line.code === 0 || (line.before_start === true && line.signal === "SIGTERM"),
          JSON.stringify(line),
        );
    } finally {
      await stop(proc);
      killLeftovers(proc);
      await cleanupPrefix(prefix);
    }
  });

  it("a second Ctrl-C while workers drain: exits 130 at once, leaving no API, worker or redis-server", async () => {
    const local = await localRedisEnv("start-twice", {
      WORKERS: "1",
      AUTOSCALE: "false",
      MODELS: "echo",
      LOG_LEVEL: "info",
    });
    // Detached: the supervisor leads its own process group, as a command typed in a terminal does.
    const proc = spawnCli(["start"], local.env, { detached: true });
    let redis: number | undefined;
    try {
      const url = await eventually(
        async () => /Inferline is up: (http:\/\/\S+)/.exec(proc.stderr())?.[1],
        30_000,
      );
      await proc.waitForLine((l) => l.event === "worker_started", 30_000);
      redis = await redisPid(local.url);
      // A job that keeps the worker draining long after the first Ctrl-C.
      const r = await fetch(`${url}/api/ml/echo`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text: "slow", sleep_ms: 30_000 }),
      });
      assert.equal(r.status, 202);
      await proc.waitForLine((l) => l.event === "job_started");
      process.kill(-proc.proc.pid!, "SIGINT");
      await proc.waitForLine((l) => l.event === "worker_draining");
      process.kill(-proc.proc.pid!, "SIGINT");
      const exit = await exitWithin(proc.exited, 20_000);
      assert.ok(exit, "the second Ctrl-C did not wait for the drain");
      assert.equal(exit.code, 130);
      const pids = proc.lines.map((l) => l.pid).filter((p): p is number => typeof p === "number");
      await eventually(async () => !alive(redis!) && pids.every((p) => !alive(p)), 15_000, 100);
      assert.equal(await local.answers(), false, "no redis-server left answering");
    } finally {
      await stop(proc);
      if (redis && alive(redis)) process.kill(redis, "SIGKILL");
      killLeftovers(proc);
      await local.cleanup();
    }
  });

  it("a start that cannot go on says why in one line, exits 1 and leaves nothing running", async () => {
    const local = await localRedisEnv("start-bad-repo", {
      MODEL_REPOSITORY: "/nonexistent",
      LOG_LEVEL: "info",
    });
    const proc = spawnCli(["start", "--workers", "1"], local.env);
    try {
      const exit = await proc.exited;
      assert.equal(exit.code, 1);
      const stderr = proc.stderr().trim();
      assert.equal(stderr.split("\n").length, 1, stderr);
      assert.match(stderr, /^inferline: MODEL_REPOSITORY="\/nonexistent": cannot read it/);
      assert.equal(await local.answers(), false, "no redis-server left answering");
      const pids = proc.lines.map((l) => l.pid).filter((p): p is number => typeof p === "number");
      assert.ok(
        pids.every((p) => !alive(p)),
        "no API or worker left running",
      );
    } finally {
      await stop(proc);
      killLeftovers(proc);
      await local.cleanup();
    }
  });

  it("a local Redis that cannot start names LOCAL_REDIS_DIR or LOCAL_REDIS_PORT, exits 1", async () => {
    // Something that is not Redis holds the port: it accepts connections and never answers.
    const squatter = createServer((socket) => socket.on("error", () => {}));
    const port = await freePort();
    await new Promise<void>((r) => squatter.listen(port, "127.0.0.1", r));
    const file = path.join(mkdtempSync(path.join(tmpdir(), "inferline-file-")), "not-a-folder");
    writeFileSync(file, "");
    try {
      for (const [extra, reason] of [
        [
          { LOCAL_REDIS_DIR: file },
          /^inferline: LOCAL_REDIS_DIR=".*not-a-folder": cannot create .*\(EEXIST\)$/m,
        ],
        [
          { LOCAL_REDIS_PORT: String(port) },
          // With what redis-server itself said.
          new RegExp(
            `^inferline: LOCAL_REDIS_PORT=${port}: redis-server .* did not start there \\(.*Address already in use`,
            "m",
          ),
        ],
      ] as const) {
        const local = await localRedisEnv("start-local-bad", { WORKERS: "1", ...extra });
        const proc = spawnCli(["start"], local.env);
        try {
          const exit = await exitWithin(proc.exited, 60_000);
          assert.ok(exit, "start gave up");
          assert.equal(exit.code, 1, proc.stderr());
          assert.match(proc.stderr(), reason);
        } finally {
          await stop(proc);
          killLeftovers(proc);
          await local.cleanup();
        }
      }
    } finally {
      squatter.close();
      rmSync(path.dirname(file), { recursive: true, force: true });
    }
  });

  it("a worker that does not stop in time is killed, named in stop_unclean, and start exits 1", async () => {
    const prefix = uniquePrefix("start-unclean");
    const proc = spawnCli(
      ["start", "--workers", "1"],
      testEnv(prefix, {
        MODELS: "echo",
        LOG_LEVEL: "info",
        AUTOSCALE: "false",
        WORKER_HANG_TIMEOUT_MS: "0",
        // The supervisor waits WORKER_SHUTDOWN_TIMEOUT_MS + 5 s for a worker to stop.
        WORKER_SHUTDOWN_TIMEOUT_MS: "1000",
      }),
    );
    let worker: number | undefined;
    try {
      await proc.waitForLine((l) => l.event === "api_started", 30_000);
      worker = Number((await proc.waitForLine((l) => l.event === "worker_started", 30_000)).pid);
      // Stopped, it cannot act on the SIGTERM it is sent.
      process.kill(worker, "SIGSTOP");
      proc.kill("SIGTERM");
      const exit = await exitWithin(proc.exited, 45_000);
      assert.ok(exit, "the supervisor exited");
      assert.equal(exit.code, 1, proc.stderr().slice(-2000));
      const unclean = proc.lines.find((l) => l.event === "stop_unclean");
      assert.deepEqual(unclean?.children, ["worker-1 (SIGKILL)"]);
      assert.equal(alive(worker), false);
      assert.ok(
        proc.lines.some((l) => l.event === "child_stopped" && l.child === "api" && l.code === 0),
        "the API still stopped cleanly",
      );
    } finally {
      if (worker !== undefined && alive(worker)) process.kill(worker, "SIGKILL");
      await stop(proc);
      killLeftovers(proc);
      await cleanupPrefix(prefix);
    }
  });

  it("kill -9 of the supervisor: its API and workers notice and shut down gracefully", async () => {
    const prefix = uniquePrefix("start-kill9");
    const proc = spawnCli(
      ["start", "--workers", "1"],
      testEnv(prefix, { MODELS: "echo", LOG_LEVEL: "info", AUTOSCALE: "false" }),
    );
    try {
      const api = Number((await proc.waitForLine((l) => l.event === "api_started", 30_000)).pid);
      const worker = Number((await proc.waitForLine((l) => l.event === "worker_started", 30_000)).pid);
      proc.kill("SIGKILL");
      await proc.exited;
      // Children write to the same pipe, so their last lines still arrive.
      await eventually(async () => !alive(api) && !alive(worker), 30_000, 100);
      await eventually(
        async () =>
          proc.lines.some((l) => l.event === "api_stopped") &&
          proc.lines.some((l) => l.event === "worker_stopped" && l.drained === true),
        5_000,
      );
    } finally {
      await stop(proc);
      killLeftovers(proc);
      await cleanupPrefix(prefix);
    }
  });

  it("an API that cannot listen (port taken): start gives up after a few tries, stops everything, exits 1", async () => {
    const prefix = uniquePrefix("start-port-taken");
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    const port = (taken.address() as AddressInfo).port;
    const proc = spawnCli(
      ["start", "--workers", "1"],
      testEnv(prefix, {
        PORT: String(port),
        MODELS: "echo",
        LOG_LEVEL: "info",
        AUTOSCALE: "false",
        SUPERVISOR_RESTART_BACKOFF_MS: "100",
      }),
    );
    try {
      const exit = await exitWithin(proc.exited, 60_000);
      assert.ok(exit, "start gave up instead of restarting the API for ever");
      assert.equal(exit.code, 1);
      assert.match(proc.stderr(), /EADDRINUSE/);
      assert.match(proc.stderr(), /^inferline: the API exited 3 times in a row before it listened/m);
      assert.equal(proc.lines.filter((l) => l.event === "child_exited" && l.child === "api").length, 2);
      const worker = proc.lines.find((l) => l.event === "worker_started");
      if (worker) assert.equal(alive(Number(worker.pid)), false, "the worker was stopped too");
    } finally {
      await stop(proc);
      killLeftovers(proc);
      taken.close();
      await cleanupPrefix(prefix);
    }
  });
});
