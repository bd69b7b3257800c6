import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { JsonSchema, ModelDescriptor } from "../../src/models/types.js";
import { InputValidator } from "../../src/models/validation.js";

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
});
