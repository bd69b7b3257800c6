import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { testEnv } from "../support/config.js";
import { spawnCli, spawnWorker, stop } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";

/** Where ONNX Runtime's usage reporting leaves its debug log, when it is on. */
const debugLog = (pid: number | undefined) => `/tmp/mat-debug-${pid}.log`;

void describe("ONNX Runtime's usage reporting", () => {
  const prefix = uniquePrefix("ort-telemetry");
  let home: string;

  before(async () => {
    home = await mkdtemp(path.join(tmpdir(), "inferline-home-"));
  });
  after(async () => {
    await cleanupPrefix(prefix);
    await rm(home, { recursive: true, force: true });
  });

  void it("is off in a worker serving ONNX models: nothing written to HOME or /tmp", async () => {
    const worker = await spawnWorker(testEnv(prefix, { HOME: home, MODELS: "penguins,spam" }));
    const pid = worker.proc.pid;
    await stop(worker);
    assert.deepEqual(await readdir(home), []);
    assert.equal(existsSync(debugLog(pid)), false);
    assert.doesNotMatch(worker.stderr(), /telemetry/i);
  });

  void it("is off in the training command, which loads the runtime to evaluate models", async () => {
    const check = spawnCli(["train", "penguins", "--evaluate"], { HOME: home });
    const { code } = await check.exited;
    assert.equal(code, 0, check.stderr());
    assert.deepEqual(await readdir(home), []);
    assert.equal(existsSync(debugLog(check.proc.pid)), false);
  });
});
