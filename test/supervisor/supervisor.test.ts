import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { after, describe, it } from "node:test";
import { pino } from "pino";
import { Supervisor } from "../../src/supervisor/supervisor.js";
import { eventually } from "../support/http.js";
import { ROOT, spawnCli, stop } from "../support/processes.js";

describe("supervisor restarts", () => {
  // A child that exits 0 after RUN_MS, as a worker recycling itself does; with END=announce-kill
  // it says it means status 0, then ends by SIGKILL (a worker holding a thread it cannot stop),
  // with END=kill it ends by SIGKILL unannounced (a crash, an OOM kill), and with END=recycle it
  // says it recycles after JOBS jobs, then exits 0.
  const dir = mkdtempSync(path.join(tmpdir(), "inferline-supervisor-"));
  const entry = path.join(dir, "child.mjs");
  writeFileSync(
    entry,
    `const kill = () => process.kill(process.pid, "SIGKILL");
    // On SIGTERM: exit 0 (a worker that drained), or with TERM=ignore hold on until killed.
    process.on("SIGTERM", () => process.env.TERM_ACTION !== "ignore" && process.exit(0));
    process.send({ type: "up" });
    setTimeout(() => {
      if (process.env.END === "announce-kill") process.send({ type: "exiting", code: 0 }, undefined, {}, kill);
      else if (process.env.END === "recycle")
        process.send({ type: "recycling", jobs: Number(process.env.JOBS), reason: "test" }, undefined, {}, () => process.exit(0));
      else if (process.env.END === "kill") kill();
      else if (process.env.END === "crash") process.exit(1);
      else process.exit(0);
    }, Number(process.env.RUN_MS));\n`,
  );
  after(() => rmSync(dir, { recursive: true, force: true }));

  function supervise(runMs: number, end = "exit", jobs = 0, termAction = "exit") {
    let up = 0;
    const lines: Record<string, unknown>[] = [];
    const logger = pino(
      { level: "info" },
      { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) },
    );
    const supervisor = new Supervisor({
      entry,
      env: {
        PATH: process.env.PATH ?? "",
        RUN_MS: String(runMs),
        END: end,
        JOBS: String(jobs),
        TERM_ACTION: termAction,
      },
      restartBackoffMs: 50,
      stopTimeoutMs: termAction === "ignore" ? 500 : 5000,
      quickExitMs: 2000,
      logger,
      onMessage: () => void up++,
    });
    supervisor.add({ name: "child", args: [] });
    const exits = () => lines.filter((l) => l.event === "child_exited");
    return { supervisor, exits, up: () => up };
  }

  it("a child that exits 0 right after its launch is restarted after a growing backoff", async () => {
    const { supervisor, exits } = supervise(0);
    try {
      await eventually(async () => exits().length >= 3, 30_000);
      const delays = exits()
        .slice(0, 3)
        .map((l) => l.restart_in_ms);
      assert.deepEqual(delays, [50, 100, 200]);
    } finally {
      await supervisor.stop();
    }
  });

  it("a worker recycling after jobs is replaced at once, however soon; one that took none backs off", async () => {
    // WORKER_MAX_JOBS under a backlog: reached within a second of each launch.
    const worked = supervise(100, "recycle", 100);
    try {
      await eventually(async () => worked.exits().length >= 4, 30_000);
      const first = worked.exits().slice(0, 4);
      assert.deepEqual(
        first.map((l) => l.restart_in_ms),
        [0, 0, 0, 0],
      );
      assert.equal(first[0]!.recycled_after_jobs, 100);
    } finally {
      await worked.supervisor.stop();
    }
    const idle = supervise(100, "recycle", 0);
    try {
      await eventually(async () => idle.exits().length >= 3, 30_000);
      assert.deepEqual(
        idle
          .exits()
          .slice(0, 3)
          .map((l) => l.restart_in_ms),
        [50, 100, 200],
      );
    } finally {
      await idle.supervisor.stop();
    }
  });

  it("a stop says which children had to be killed, and only those", async () => {
    const clean = supervise(60_000);
    await eventually(async () => clean.up() > 0, 10_000);
    await clean.supervisor.stop();
    assert.deepEqual(clean.supervisor.uncleanStops, []);
    const stubborn = supervise(60_000, "exit", 0, "ignore");
    await eventually(async () => stubborn.up() > 0, 10_000);
    await stubborn.supervisor.stop();
    assert.deepEqual(stubborn.supervisor.uncleanStops, ["child (SIGKILL)"]);
  });

  it("a child that exits 0 after running a while (a worker recycling) is replaced at once", async () => {
    const { supervisor, exits } = supervise(2500);
    try {
      const first = await eventually(async () => exits()[0], 30_000);
      assert.ok(Number(first.ran_ms) >= 2000, JSON.stringify(first));
      assert.equal(first.restart_in_ms, 0);
    } finally {
      await supervisor.stop();
    }
  });

  it("a child that announces status 0 and then ends by SIGKILL is replaced at once, as a clean exit", async () => {
    const { supervisor, exits } = supervise(2500, "announce-kill");
    try {
      const first = await eventually(async () => exits()[0], 30_000);
      assert.equal(first.signal, "SIGKILL");
      assert.equal(first.code, 0, JSON.stringify(first));
      assert.equal(first.restart_in_ms, 0);
      // The announcement is per launch: the next child starts with none.
      const second = await eventually(async () => exits()[1], 30_000);
      assert.equal(second.restart_in_ms, 0);
    } finally {
      await supervisor.stop();
    }
  });

  it("keeps running through a restart backoff when every child is down", async () => {
    // A supervisor process of its own, whose only child crashes at once: nothing but the
    // pending restart keeps its event loop alive.
    const script = path.join(dir, "supervise.mjs");
    const supervisorModule = pathToFileURL(path.join(ROOT, "src/supervisor/supervisor.ts")).href;
    writeFileSync(
      script,
      `import { Supervisor } from ${JSON.stringify(supervisorModule)};
      const log = (o) => console.log(JSON.stringify(o));
      const logger = { info: log, warn: log, error: log };
      const s = new Supervisor({ entry: ${JSON.stringify(entry)}, env: { PATH: process.env.PATH, RUN_MS: "0", END: "crash" },
        restartBackoffMs: 300, stopTimeoutMs: 2000, logger });
      s.add({ name: "child", args: [] });
      process.on("SIGTERM", () => void s.stop().then(() => process.exit(0)));\n`,
    );
    const proc = spawnCli([], { RUN_MS: "0" }, { node: ["--import", "tsx", script] });
    try {
      const third = await proc.waitForLine(
        (l) => l.event === "child_exited" && proc.lines.filter((x) => x.event === "child_exited").length >= 3,
        30_000,
      );
      assert.equal(third.code, 1);
      assert.equal(proc.proc.exitCode, null, "the supervisor is still running");
    } finally {
      await stop(proc);
    }
  });

  it("a child killed by SIGKILL without an announcement backs off like a crash", async () => {
    const { supervisor, exits } = supervise(2500, "kill");
    try {
      const first = await eventually(async () => exits()[0], 30_000);
      assert.equal(first.signal, "SIGKILL");
      assert.equal(first.code, null);
      assert.equal(first.restart_in_ms, 50);
    } finally {
      await supervisor.stop();
    }
  });
});
