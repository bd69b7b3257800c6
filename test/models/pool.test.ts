import assert from "node:assert/strict";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
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

  void it("unloads a version other than the latest once no job asked for it, and loads it again on demand", async () => {
    const repo = await mkdtemp(path.join(tmpdir(), "inferline-pool-"));
    try {
      for (const v of ["1", "2"]) {
        const dir = path.join(repo, "echo", v);
        await cp(path.join(MODELS_DIR, "echo", "1"), dir, { recursive: true });
        const manifest = JSON.parse(await readFile(path.join(dir, "manifest.json"), "utf8")) as object;
        await writeFile(path.join(dir, "manifest.json"), JSON.stringify({ ...manifest, version: v }));
      }
      const catalog = await ModelCatalog.load(repo);
      const { runtime, loads, closed } = controlledRuntime();
      let release = () => {};
      const busy = new Promise<void>((r) => (release = r));
      let id = 0;
      const model = (descriptor: ModelDescriptor): LoadedModel => {
        const mine = ++id;
        return {
          descriptor,
          predictBatch: async (items) => {
            await busy;
            return items.map(() => ({}));
          },
          close: async () => void closed.push(mine),
        };
      };
      const pool = new ModelPool(catalog, [runtime]);
      const latest = pool.get("echo", "2");
      const old = pool.get("echo", "1");
      loads[0]!.resolve(model(catalog.resolve("echo", "2")));
      loads[1]!.resolve(model(catalog.resolve("echo", "1")));
      const oldEntry = await old;
      await latest;
      const t0 = Date.now();
      assert.deepEqual(pool.unloadIdle(60_000, t0), [], "asked for just now");
      // Running a batch: kept however long ago it was asked for.
      const job = oldEntry.batcher.submit({ input: {}, attempt: 1 });
      await sleep(5);
      assert.deepEqual(pool.unloadIdle(60_000, t0 + 120_000), []);
      release();
      await job;
      await sleep(5);
      // Idle and not asked for: the old version goes, the latest stays however idle.
      assert.deepEqual(pool.unloadIdle(60_000, Date.now() + 120_000), [{ model: "echo", version: "1" }]);
      await sleep(5);
      assert.deepEqual(closed, [2]);
      // A job for it loads it again.
      const again = pool.get("echo", "1");
      assert.equal(loads.length, 3);
      loads[2]!.resolve(model(catalog.resolve("echo", "1")));
      assert.notEqual((await again).model, oldEntry.model);
      await pool.close();
      assert.deepEqual(closed.sort(), [1, 2, 3]);
    } finally {
      await rm(repo, { recursive: true, force: true });
    }
  });
});
