import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { createServer, type AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { testEnv } from "../support/config.js";
import { call, eventually, freePort } from "../support/http.js";
import { localRedisEnv } from "../support/local-redis-env.js";
import { alive, ROOT, spawnCli, stop } from "../support/processes.js";
import { redisAnswers } from "../../src/supervisor/local-redis.js";
import { cleanupPrefix, ownRedis, uniquePrefix } from "../support/redis.js";

async function bannerUrl(stderr: () => string): Promise<string> {
  return eventually(async () => /Inferline is up: (http:\/\/\S+)/.exec(stderr())?.[1], 30_000);
}

describe("inferline start", () => {
  it("starts its own redis-server when nothing answers, serves a prediction, stops everything on Ctrl-C", async () => {
    const local = await localRedisEnv("start", { WORKERS: "1", LOG_LEVEL: "warn" });
    const proc = spawnCli(["start"], local.env);
    try {
      const url = await bannerUrl(proc.stderr);
      assert.ok(await local.answers(), "redis-server started on the local port");
      const r = await eventually(
        async () => {
          const res = await call(
            url,
            "POST",
            "/api/ml/sentiment",
            { text: "I love it, Inferline is great!" },
            { prefer: "wait=5" },
          );
          return res.status === 200 ? res : undefined;
        },
        30_000,
        250,
      );
      assert.equal(r.body.status, "completed");
      assert.equal((r.body.result as { label: string }).label, "positive");
      assert.match(proc.stderr(), /redis\s+started here/);
      proc.kill("SIGINT");
      const exit = await proc.exited;
      assert.equal(exit.code, 0);
      assert.equal(await local.answers(), false, "its redis-server stopped with it");
    } finally {
      await stop(proc);
      await local.cleanup();
    }
  });

  it("Ctrl-C (SIGINT to the whole process group) lets workers finish their jobs, then stops the API and Redis", async () => {
    const local = await localRedisEnv("start-ctrlc", {
      WORKERS: "1",
      AUTOSCALE: "false",
      MODELS: "echo",
      LOG_LEVEL: "info",
    });
    // Detached: the supervisor leads its own process group, as a command typed in a terminal does.
    const proc = spawnCli(["start"], local.env, { detached: true });
    try {
      const url = await bannerUrl(proc.stderr);
      await proc.waitForLine((l) => l.event === "worker_started", 30_000);
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await call(url, "POST", "/api/ml/echo", { text: `in flight ${i}`, sleep_ms: 2000 });
        assert.equal(r.status, 202, JSON.stringify(r.body));
        ids.push(r.body.job_id as string);
      }
      for (const id of ids) await proc.waitForLine((l) => l.event === "job_started" && l.job_id === id);
      // What the terminal does on Ctrl-C: SIGINT to every process of the foreground group.
      process.kill(-proc.proc.pid!, "SIGINT");
      const exit = await proc.exited;
      assert.equal(exit.code, 0, proc.stderr().slice(-2000));
      for (const id of ids)
        assert.ok(
          proc.lines.some((l) => l.event === "job_completed" && l.job_id === id),
          `job ${id} completed before Redis stopped`,
        );
      const stopped = proc.lines.filter((l) => l.event === "worker_stopped");
      assert.equal(stopped.length, 1);
      assert.equal(stopped[0]?.drained, true);
      // On failure, what the supervisor and its children said while stopping tells why.
      const stopping = JSON.stringify(
        proc.lines.filter(
          (l) => /stop|exit|shutdown|signal/.test(String(l.event)) || l.role === "supervisor",
        ),
      );
      const children = proc.lines.filter((l) => l.event === "child_stopped");
      assert.deepEqual(children.map((l) => l.child).sort(), ["api", "worker-1"], stopping);
      // No process it launched outlives it.
      const pids = new Set(
        proc.lines.filter((l) => l.role === "api" || l.role === "worker").map((l) => l.pid),
      );
      assert.equal(pids.size, 2, stopping);
      for (const pid of pids)
        assert.equal(alive(Number(pid)), false, `process ${String(pid)} outlived start`);
      // Its standard output is the JSON log alone: redis-server's own output comes as log lines,
      // never as text that could land inside one.
      assert.deepEqual(proc.unparsed, []);
      assert.ok(
        proc.lines.some((l) => l.event === "redis_output"),
        "redis-server's output is logged",
      );
      for (const c of children) assert.equal(c.code, 0, JSON.stringify(c));
      assert.equal(await local.answers(), false, "its redis-server stopped with it");
    } finally {
      await stop(proc);
      await local.cleanup();
    }
  });

  it("names a redis-server an earlier start left running, uses it, and leaves it running", async () => {
    // What a start killed with -9 leaves behind: its redis-server, with its data in LOCAL_REDIS_DIR.
    const redis = await ownRedis({ aof: false });
    const prefix = uniquePrefix("start-left");
    const env = testEnv(prefix, {
      LOCAL_REDIS_PORT: String(redis.port),
      LOCAL_REDIS_DIR: redis.dir,
      WORKERS: "0",
      LOG_LEVEL: "info",
    });
    delete (env as Record<string, string | undefined>).REDIS_URL;
    const proc = spawnCli(["start"], env);
    try {
      await bannerUrl(proc.stderr);
      assert.match(proc.stderr(), /redis\s+left running by an earlier start .*redis-cli -p \d+ shutdown/);
      const found = await proc.waitForLine((l) => l.event === "redis_found");
      assert.equal(found.left_running, true);
      proc.kill("SIGINT");
      assert.equal((await proc.exited).code, 0);
      assert.ok(await redisAnswers(redis.url, 1000), "not stopped: this run did not start it");
    } finally {
      await stop(proc);
      await redis.destroy();
    }
  });

  it("uses REDIS_URL when set and never starts a redis-server", async () => {
    const prefix = uniquePrefix("start-url");
    const proc = spawnCli(["start", "--workers", "1"], testEnv(prefix, { LOG_LEVEL: "warn" }));
    try {
      const url = await bannerUrl(proc.stderr);
      assert.match(proc.stderr(), /redis\s+external\n/);
      const r = await eventually(
        async () => {
          const res = await call(url, "POST", "/api/ml/echo", { text: "hi" }, { prefer: "wait=5" });
          return res.status === 200 ? res : undefined;
        },
        30_000,
        250,
      );
      assert.deepEqual(r.body.result, { echo: "hi", attempt: 1 });
      proc.kill("SIGTERM");
      assert.equal((await proc.exited).code, 0);
    } finally {
      await stop(proc);
      await cleanupPrefix(prefix);
    }
  });

  it("a REDIS_URL that does not answer yet: the banner says so, and start waits for it", async () => {
    const proc = spawnCli(
      ["start", "--workers", "0"],
      testEnv(uniquePrefix("start-url-down"), { REDIS_URL: `redis://127.0.0.1:${await freePort()}` }),
    );
    try {
      await bannerUrl(proc.stderr);
      assert.match(
        proc.stderr(),
        /redis\s+external, not answering yet \(predictions answer 503 until it does\)/,
      );
      proc.kill("SIGTERM");
      assert.equal((await proc.exited).code, 0);
    } finally {
      await stop(proc);
    }
  });

  it("says how to get Redis when none answers and redis-server is not installed", async () => {
    const port = await freePort();
    const env = testEnv("start-none", { LOCAL_REDIS_PORT: String(port), PATH: "/nonexistent" });
    delete (env as Record<string, string | undefined>).REDIS_URL;
    const proc = spawnCli(["start"], env);
    const exit = await proc.exited;
    assert.equal(exit.code, 1);
    assert.match(proc.stderr(), /redis-server is not on PATH/);
    assert.match(proc.stderr(), /REDIS_URL=/);
  });
});

describe("configuration", () => {
  it("fails at boot naming the bad variable", async () => {
    const proc = spawnCli(["api"], testEnv("cfg", { PORT: "not-a-port", JOB_ATTEMPTS: "0" }));
    const exit = await proc.exited;
    assert.equal(exit.code, 2);
    assert.match(proc.stderr(), /PORT="not-a-port"/);
    assert.match(proc.stderr(), /JOB_ATTEMPTS="0"/);
  });

  it("start refuses an autoscaler minimum above its maximum before launching anything", async () => {
    // Nothing may start: no Redis to find (the port is free), so a launch would hang or fail otherwise.
    const env = testEnv("cfg-bounds", {
      AUTOSCALE_MIN_WORKERS: "5",
      AUTOSCALE_MAX_WORKERS: "3",
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    });
    const proc = spawnCli(["start"], env);
    const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
    const exit = await proc.exited;
    clearTimeout(timer);
    assert.equal(exit.code, 2, proc.stderr());
    assert.match(proc.stderr(), /AUTOSCALE_MIN_WORKERS="5": must not be above AUTOSCALE_MAX_WORKERS \(3\)/);
  });

  it("refuses number options out of their variable's bounds, naming the range", async () => {
    const prefix = uniquePrefix("cli-bounds");
    for (const [args, range] of [
      [["worker", "-c", "0"], /from 1 to 1024/],
      [["api", "-p", "70000"], /from 0 to 65535/],
      [["start", "--workers", "65"], /from 0 to 64/],
      [["start", "--workers", "2.5"], /from 0 to 64/],
    ] as const) {
      // Nothing may start: no Redis to find (the port is free), no keys written.
      const proc = spawnCli(args, testEnv(prefix, { REDIS_URL: `redis://127.0.0.1:${await freePort()}` }));
      const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      const exit = await proc.exited;
      clearTimeout(timer);
      assert.notEqual(exit.code, 0, args.join(" "));
      assert.match(proc.stderr(), range, args.join(" "));
    }
  });

  it("an API that cannot listen names HOST and PORT and exits 1", async () => {
    const prefix = uniquePrefix("cli-listen");
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    const port = (taken.address() as AddressInfo).port;
    try {
      for (const [env, reason] of [
        [
          { PORT: String(port) },
          new RegExp(`^inferline: HOST=127\\.0\\.0\\.1 PORT=${port}: the port is in use \\(EADDRINUSE\\)`),
        ],
        // An address of the documentation range: no interface of this host has it.
        [
          { HOST: "192.0.2.1" },
          /^inferline: HOST=192\.0\.2\.1 PORT=0: no network interface .*\(EADDRNOTAVAIL\)/,
        ],
      ] as const) {
        const proc = spawnCli(["api"], testEnv(prefix, env));
        const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
        const exit = await proc.exited;
        clearTimeout(timer);
        assert.equal(exit.code, 1, proc.stderr());
        assert.match(proc.stderr(), reason);
      }
    } finally {
      taken.close();
      await cleanupPrefix(prefix);
    }
  });

  it("an API or worker with no model to serve names MODEL_REPOSITORY and the list asked for, exits 1", async () => {
    const prefix = uniquePrefix("cli-models");
    for (const [args, env, reason] of [
      [
        ["api"],
        { MODEL_REPOSITORY: "/nonexistent" },
        /^inferline: MODEL_REPOSITORY="\/nonexistent": cannot read it \(ENOENT\)$/m,
      ],
      [
        ["worker"],
        { MODEL_REPOSITORY: "/nonexistent" },
        /^inferline: MODEL_REPOSITORY="\/nonexistent": cannot read it \(ENOENT\)$/m,
      ],
      [
        ["api"],
        { MODELS: "nosuch" },
        /^inferline: MODEL_REPOSITORY=".*": no loadable model among MODELS=nosuch$/m,
      ],
      [
        ["worker", "--models", "nosuch,other"],
        {},
        /^inferline: MODEL_REPOSITORY=".*": no loadable model among --models=nosuch,other$/m,
      ],
    ] as const) {
      const proc = spawnCli(args, testEnv(prefix, env));
      const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
      const exit = await proc.exited;
      clearTimeout(timer);
      assert.equal(exit.code, 1, `${args.join(" ")}: ${proc.stderr()}`);
      assert.match(proc.stderr(), reason, args.join(" "));
    }
  });

  it("every command has --help", async () => {
    for (const cmd of ["start", "api", "worker"]) {
      const proc = spawnCli([cmd, "--help"], {});
      assert.equal((await proc.exited).code, 0);
    }
  });

  it("--version prints the package's version; --help names the exit statuses", async () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
    for (const flag of ["--version", "-V"]) {
      const proc = spawnCli([flag], {});
      assert.equal((await proc.exited).code, 0, proc.stderr());
      assert.equal(proc.stdout().trim(), pkg.version);
    }
    const help = spawnCli(["--help"], {});
    assert.equal((await help.exited).code, 0);
    assert.match(help.stdout(), /env\.example/);
    assert.match(help.stdout(), /Exit status: 0 .*; 1 .*\n?.*2 invalid configuration.*130/s);
  });
});
