import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";
import { readDescriptor } from "../../src/models/catalog.js";
import { onnxRuntime } from "../../src/models/onnx/runtime.js";
import { MODELS_DIR } from "./reference.js";

void describe("ONNX runtime", () => {
  void it("loads and runs a model from the TypeScript sources (tests, development)", async () => {
    const descriptor = await readDescriptor(path.join(MODELS_DIR, "penguins", "1"), "penguins", "1");
    const model = await onnxRuntime({
      intraOpThreads: 1,
      interOpThreads: 1,
      inferenceTimeoutMs: 30_000,
    }).load(descriptor);
    try {
      const [out] = await model.predictBatch([
        {
          input: {
            island: "Torgersen",
            bill_length_mm: 39,
            bill_depth_mm: 18.7,
            flipper_length_mm: 181,
            body_mass_g: 3750,
          },
          attempt: 1,
        },
      ]);
      assert.equal((out as { label: string }).label, "Adelie");
    } finally {
      await model.close();
    }
  });
});
