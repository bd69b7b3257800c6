import assert from "node:assert/strict";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ModelCatalog } from "../../src/models/catalog.js";
import type { LoadedModel, ModelDescriptor, ModelRuntime } from "../../src/models/types.js";
import { ModelPool } from "../../src/worker/pool.js";
import { MODELS_DIR } from "./reference.js";

/** A runtime whose loads end when the test says, recording which models it made and closed. */
function controlledRuntime() {
  const loads: { resolve: (m: LoadedModel) => void; reject: (e: Error) => void }[] = [];
  const closed: number[] = [];
  const runtime: ModelRuntime = {
    kind: "builtin",
    load: () => new Promise((resolve, reject) => loads.push({ resolve, reject })),
  };
  const model = (id: number, descriptor: ModelDescriptor): LoadedModel => ({
    descriptor,
    predictBatch: async () => [],
    close: async () => void closed.push(id),
  });
  return { runtime, loads, closed, model };
}

void describe("model pool", () => {
  void it("a failed load forgets itself only: a newer load of the version stays loaded and is closed", async () => {
    const repo = await mkdtemp(path.join(tmpdir(), "inferline-pool-"));
    const version = path.join(repo, "echo", "1");
    try {
      await cp(path.join(MODELS_DIR, "echo", "1"), version, { recursive: true });
      const catalog = await ModelCatalog.load(repo);
      const { runtime, loads, closed, model } = controlledRuntime();
      const pool = new ModelPool(catalog, [runtime]);
      const first = pool.get("echo", "1");
      first.catch(() => {});
      // A reload while it loads finds the folder gone and unloads the version...
      await rm(version, { recursive: true });
      catalog.adopt(await ModelCatalog.load(repo));
      assert.deepEqual(pool.unloadMissing(), [{ model: "echo", version: "1" }]);
      // ...the next reload finds it back, and a job loads it again.
      await cp(path.join(MODELS_DIR, "echo", "1"), version, { recursive: true });
      catalog.adopt(await ModelCatalog.load(repo));
      const second = pool.get("echo", "1");
      loads[1]!.resolve(model(2, catalog.resolve("echo")));
      await second;
      // The first load then fails (its folder had gone under it).
      loads[0]!.reject(new Error("gone"));
      await sleep(10);
      const again = pool.get("echo", "1");
      assert.equal(loads.length, 2, "the newer load serves: no third load");
      assert.equal((await again).model, (await second).model);
      await pool.close();
      assert.deepEqual(closed, [2], "closed with the pool, not left open");
    } finally {
      await rm(repo, { recursive: true, force: true });
    }
  });
});
