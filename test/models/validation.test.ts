import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { ModelCatalog } from "../../src/models/catalog.js";
import type { JsonSchema, ModelDescriptor } from "../../src/models/types.js";
import { InputValidator } from "../../src/models/validation.js";
import { MODELS_DIR } from "./reference.js";

const descriptor = (inputSchema: JsonSchema) => ({ name: "m", version: "1", inputSchema }) as ModelDescriptor;

void describe("input validation", () => {
  void it("checks schemas that share an $id: a manifest read again, or the next version", () => {
    const validator = new InputValidator();
    const schema = (extra: Record<string, unknown>) => ({
      $id: "https://example.com/iris-input",
      type: "object",
      properties: { x: { type: "number" }, ...extra },
      additionalProperties: false,
    });
    // What a reload does: the same manifest parsed into a new object.
    for (let i = 0; i < 2; i++)
      assert.deepEqual(validator.check(descriptor(schema({})), { x: "a" }), [
        { field: "x", message: "must be number" },
      ]);
    // Version 2 adds a field and keeps the $id.
    const v2 = descriptor(schema({ y: { type: "number" } }));
    assert.deepEqual(validator.check(v2, { x: 1, y: 2 }), []);
    assert.deepEqual(validator.check(v2, { x: 1, y: "b" }), [{ field: "y", message: "must be number" }]);
  });

  void it("does not keep a compiled copy of every schema per reload", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const validator = new InputValidator();
    const catalog = await ModelCatalog.load(MODELS_DIR);
    const reload = async (times: number) => {
      for (let i = 0; i < times; i++) {
        // A reload: the same manifests, read into new objects.
        catalog.adopt(await ModelCatalog.load(MODELS_DIR));
        for (const d of catalog.all()) validator.check(d, {});
      }
      gc();
      return process.memoryUsage().heapUsed;
    };
    const before = await reload(20);
    const grown = (await reload(150)) - before;
    // Keyed by object, 150 reloads of the repository's six models kept about 8 MB.
    assert.ok(grown < 3e6, `heap grew ${Math.round(grown / 1e6)} MB over 150 reloads`);
  });
});
