import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { describe, it } from "node:test";
import { terminateChild } from "../../src/supervisor/terminate.js";

/** A node child running `code`, and a promise of its exit (code, signal), once it is running. */
async function child(code: string): Promise<{ proc: ChildProcess; exited: Promise<NodeJS.Signals | null> }> {
  const proc = spawn(process.execPath, ["-e", `${code}; process.stdout.write("up\\n")`], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<NodeJS.Signals | null>((r) => proc.once("close", (_code, signal) => r(signal)));
  await new Promise((r) => proc.stdout.once("data", r));
  return { proc, exited };
}

describe("terminateChild", () => {
  it("a child that stops on SIGTERM is not killed, and the call returns once it has closed", async () => {
    const { proc, exited } = await child(`setInterval(() => {}, 1000)`);
    const t0 = performance.now();
    await terminateChild(proc, exited, 10_000);
    assert.equal(await exited, "SIGTERM");
    assert.notEqual(proc.exitCode ?? proc.signalCode, null, "closed when the call returned");
    assert.ok(performance.now() - t0 < 5000, "did not wait for the timeout");
  });

  it("a child that ignores SIGTERM is killed (SIGKILL) after the timeout, and waited for", async () => {
    const { proc, exited } = await child(`process.on("SIGTERM", () => {}); setInterval(() => {}, 1000)`);
    const t0 = performance.now();
    await terminateChild(proc, exited, 300);
    assert.equal(await exited, "SIGKILL");
    assert.equal(proc.signalCode, "SIGKILL", "closed when the call returned");
    assert.ok(performance.now() - t0 >= 290, "SIGTERM had its time first");
  });

  it("a child that has exited already gets no signal", async () => {
    const { proc, exited } = await child(`setTimeout(() => process.exit(3), 10)`);
    await exited;
    const sent: string[] = [];
    const kill = proc.kill.bind(proc);
    proc.kill = (signal?: NodeJS.Signals | number) => (sent.push(String(signal)), kill(signal));
    await terminateChild(proc, exited, 300);
    assert.deepEqual(sent, []);
    assert.equal(proc.exitCode, 3);
  });
});
