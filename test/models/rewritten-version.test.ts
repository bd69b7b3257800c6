import assert from "node:assert/strict";
import { cp, mkdtemp, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { readDescriptor } from "../../src/models/catalog.js";
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

  void it("is told apart by its files' contents, not where or when they were copied", async () => {
    const read = (root: string) => readDescriptor(path.join(root, "penguins", "1"), "penguins", "1");
    const copy = await mkdtemp(path.join(tmpdir(), "inferline-rewritten-copy-"));
    try {
      // Another host's copy, made without keeping times: the same files, so the same results.
      await cp(path.join(repo, "penguins"), path.join(copy, "penguins"), { recursive: true });
      await utimes(path.join(copy, "penguins", "1", "model.onnx"), new Date(0), new Date(0));
      assert.equal((await read(copy)).fingerprint, (await read(repo)).fingerprint);
      assert.match((await read(repo)).fingerprint, /^[0-9a-f]{16}$/);
      await addPenguinsVersion(copy, "1", {
        edit: (m) => (m.input.properties.island!.description = "where"),
      });
      assert.notEqual((await read(copy)).fingerprint, (await read(repo)).fingerprint);
    } finally {
      await rm(copy, { recursive: true, force: true });
    }
  });
});
