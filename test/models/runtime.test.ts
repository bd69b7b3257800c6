import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import onnxProto from "onnx-proto";
import { readDescriptor } from "../../src/models/catalog.js";
import { onnxRuntime } from "../../src/models/onnx/runtime.js";
import type { LoadedModel, PredictItem } from "../../src/models/types.js";
import { encodeModel } from "../../src/training/onnx-export.js";
import { Batcher } from "../../src/worker/batcher.js";
import { MODELS_DIR } from "./reference.js";

/** y = x W with W the 2 × 2 identity, its input and output exported with a fixed batch of `batch`. */
function fixedBatchModel(batch: number): Uint8Array {
  const { onnx } = onnxProto;
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const info = (name: string) =>
    onnx.ValueInfoProto.create({
      name,
      type: onnx.TypeProto.create({
        tensorType: onnx.TypeProto.Tensor.create({
          elemType: FLOAT,
          shape: onnx.TensorShapeProto.create({
            dim: [batch, 2].map((d) => onnx.TensorShapeProto.Dimension.create({ dimValue: d })),
          }),
        }),
      }),
    });
  const graph = onnx.GraphProto.create({
    name: "fixed-batch",
    node: [onnx.NodeProto.create({ opType: "MatMul", input: ["x", "W"], output: ["y"] })],
    initializer: [
      onnx.TensorProto.create({
        name: "W",
        dims: [2, 2],
        dataType: FLOAT,
        rawData: new Uint8Array(new Float32Array([1, 0, 0, 1]).buffer),
      }),
    ],
    input: [info("x")],
    output: [info("y")],
  });
  return encodeModel(graph, "test");
}

async function loadFixedBatch(repo: string, batch: number) {
  const dir = path.join(repo, `fixed-${batch}`, "1");
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "model.onnx"), fixedBatchModel(batch));
  await writeFile(
    path.join(dir, "manifest.json"),
    JSON.stringify({
      name: `fixed-${batch}`,
      version: "1",
      kind: "onnx",
      file: "model.onnx",
      input: { type: "object" },
      preprocessing: { type: "vector", field: "x", dimensions: 2 },
      output: { task: "classification", labels: ["a", "b"] },
      batching: { maxBatchSize: 32, maxDelayMs: 0 },
    }),
  );
  const descriptor = await readDescriptor(dir, `fixed-${batch}`, "1");
  return onnxRuntime({ intraOpThreads: 1, interOpThreads: 1, inferenceTimeoutMs: 30_000 }).load(descriptor);
}

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

  void it("runs a model exported with a fixed batch of 1 one row at a time, never a batch it refuses", async () => {
    const repo = await mkdtemp(path.join(tmpdir(), "inferline-fixed-batch-"));
    try {
      const model = await loadFixedBatch(repo, 1);
      // Every call the batcher makes, and whether ONNX Runtime took it.
      const calls: { rows: number; ok: boolean }[] = [];
      const watched: LoadedModel = {
        descriptor: model.descriptor,
        maxBatchRows: model.maxBatchRows,
        predictBatch: async (items: readonly PredictItem[]) => {
          try {
            const out = await model.predictBatch(items);
            calls.push({ rows: items.length, ok: true });
            return out;
          } catch (err) {
            calls.push({ rows: items.length, ok: false });
            throw err;
          }
        },
        close: () => model.close(),
      };
      try {
        const batcher = new Batcher(watched);
        const inputs = [
          [1, 0],
          [0, 1],
          [2, 0],
          [0, 2],
        ];
        const outcomes = await Promise.all(inputs.map((x) => batcher.submit({ input: { x }, attempt: 1 })));
        assert.deepEqual(
          outcomes.map((o) => (o.output as { label: string }).label),
          ["a", "b", "a", "b"],
        );
        assert.deepEqual(
          calls,
          inputs.map(() => ({ rows: 1, ok: true })),
        );
      } finally {
        await watched.close();
      }
      // A fixed batch of more rows cannot take a partial batch: the load says what to do.
      await assert.rejects(
        loadFixedBatch(repo, 8),
        /fixed batch of 8 rows: export the model with a dynamic batch dimension/,
      );
    } finally {
      await rm(repo, { recursive: true, force: true });
    }
  });
});
