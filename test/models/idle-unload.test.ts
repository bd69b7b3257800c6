import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { testConfig, testEnv } from "../support/config.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import { addPenguinsVersion, ADELIE, predict } from "./reference.js";

void describe("idle model versions", () => {
  const prefix = uniquePrefix("idle-unload");
  let repo: string;
  let api: ApiHandle;
  let worker: Spawned;

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-idle-"));
    for (const version of ["1", "2"]) await addPenguinsVersion(repo, version);
    api = await startApi(testConfig(prefix, { MODEL_REPOSITORY: repo }));
    worker = await spawnWorker(testEnv(prefix, { MODEL_REPOSITORY: repo, MODEL_IDLE_UNLOAD_SECONDS: "1" }));
  });
  after(async () => {
    await stop(worker);
    await api.close();
    await cleanupPrefix(prefix);
    await rm(repo, { recursive: true, force: true });
  });

  void it("unloads an old version no job asked for, keeps the latest, and loads the old one again on demand", async () => {
    const threads = async () => (await readdir(`/proc/${worker.proc.pid}/task`)).length;
    const latestOnly = await threads();
    const old = await predict(api.url, "penguins?version=1", ADELIE);
    assert.equal(old.status, 200, JSON.stringify(old.body));
    assert.equal(old.body.version, "1");
    assert.ok((await threads()) > latestOnly, "version 1's session runs on threads of its own");
    const unloaded = await worker.waitForLine((l) => l.event === "model_unloaded", 10_000);
    assert.deepEqual([unloaded.model, unloaded.version, unloaded.reason], ["penguins", "1", "idle"]);
    // Its session's threads end with it.
    for (let i = 0; i < 50 && (await threads()) > latestOnly; i++) await sleep(100);
    assert.equal(await threads(), latestOnly);
    // The latest stays loaded however idle; the old version serves again when asked for.
    await sleep(1500);
    assert.equal(worker.lines.filter((l) => l.event === "model_unloaded").length, 1);
    const again = await predict(api.url, "penguins?version=1", { ...ADELIE, body_mass_g: 3751 });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.version, "1");
    const latest = await predict(api.url, "penguins", { ...ADELIE, body_mass_g: 3752 });
    assert.equal(latest.status, 200, JSON.stringify(latest.body));
    assert.equal(latest.body.version, "2");
  });
});
