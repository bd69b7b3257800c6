import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { testConfig, testEnv } from "../support/config.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import { addPenguinsVersion, ADELIE, predict } from "./reference.js";

/**
 * Versions are meant to be immutable, yet `inferline train` rewrites version 1 in place, and so
 * may an operator. Results cached for what the version held (kept for a day for penguins) must
 * not answer for what it holds after the processes restart.
 */
void describe("a version rewritten in place", () => {
  const prefix = uniquePrefix("rewritten-version");
  let repo: string;
  let api: ApiHandle | undefined;
  let worker: Spawned | undefined;
  const startBoth = {
    api: async () =>
      (api = await startApi(testConfig(prefix, { MODEL_REPOSITORY: repo, MODELS: "penguins" }))),
    worker: async () =>
      (worker = await spawnWorker(testEnv(prefix, { MODEL_REPOSITORY: repo, MODELS: "penguins" }))),
  };
  const ask = async () => {
    const r = await predict(api!.url, "penguins", ADELIE);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return { label: (r.body.result as { label: string }).label, cached: r.body.cached };
  };

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-rewritten-"));
    await addPenguinsVersion(repo, "1");
    await startBoth.api();
    await startBoth.worker();
  });
  after(async () => {
    if (worker) await stop(worker);
    await api?.close();
    await cleanupPrefix(prefix);
    await rm(repo, { recursive: true, force: true });
  });

  void it("is answered from its new files once the processes restart, not from the cache", async () => {
    assert.deepEqual(await ask(), { label: "Adelie", cached: false });
    assert.deepEqual(await ask(), { label: "Adelie", cached: true });

    // The same version, rewritten: its labels in another order, so the same input is another class.
    await addPenguinsVersion(repo, "1", { edit: (m) => m.output.labels.reverse() });

    // The API restarted first: it keys results by the new files, while the worker still runs
    // the old ones. Their answers are not cached where requests for the new files look.
    await api!.close();
    await startBoth.api();
    assert.deepEqual(await ask(), { label: "Adelie", cached: false });
    assert.deepEqual(await ask(), { label: "Adelie", cached: false });

    // Both restarted: the new files answer, and their results are cached in turn.
    await stop(worker!);
    await startBoth.worker();
    assert.deepEqual(await ask(), { label: "Gentoo", cached: false });
    assert.deepEqual(await ask(), { label: "Gentoo", cached: true });
  });
});
