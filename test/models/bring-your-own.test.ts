import assert from "node:assert/strict";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import onnxProto from "onnx-proto";
import { Mlp } from "../../src/training/mlp.js";
import { encodeModel, exportMlp } from "../../src/training/onnx-export.js";
import { testConfig, testEnv } from "../support/config.js";
import { call } from "../support/http.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import { predict } from "./reference.js";

/**
 * Stands in for a model exported from scikit-learn or PyTorch: a linear layer whose ONNX file
 * this test writes itself, outputting raw scores (logits) as torch.onnx.export would, with input
 * and output tensor names of its own.
 */
const W = [
  [2, -1, 0.5],
  [-1, 1.5, 0],
  [0.25, 0, -2],
  [1, 1, 1],
]; // 4 features × 3 classes
const B = [0.1, -0.2, 0.3];

function linearModel(): Uint8Array {
  const m = Mlp.init([4, 3], "mse", 1);
  const layer = m.layers[0]!;
  layer.weights.set(W.flat());
  layer.bias.set(B);
  return exportMlp(m, { input: "float_input", output: "logits" });
}

/**
 * The same linear layer with its output transposed: [classes, batch]. Each of its numbers is a
 * valid probability-like score, but row r of the output is not the answer to row r of the input.
 */
function classesFirstModel(): Uint8Array {
  const { onnx } = onnxProto;
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const dim = (d: number | string) =>
    typeof d === "number"
      ? onnx.TensorShapeProto.Dimension.create({ dimValue: d })
      : onnx.TensorShapeProto.Dimension.create({ dimParam: d });
  const info = (name: string, dims: (number | string)[]) =>
    onnx.ValueInfoProto.create({
      name,
      type: onnx.TypeProto.create({
        tensorType: onnx.TypeProto.Tensor.create({
          elemType: FLOAT,
          shape: onnx.TensorShapeProto.create({ dim: dims.map(dim) }),
        }),
      }),
    });
  const weights = new Float32Array(W.flat());
  const graph = onnx.GraphProto.create({
    name: "classes-first",
    node: [
      onnx.NodeProto.create({ opType: "MatMul", input: ["float_input", "W"], output: ["scores"] }),
      onnx.NodeProto.create({ opType: "Transpose", input: ["scores"], output: ["logits"] }),
    ],
    initializer: [
      onnx.TensorProto.create({
        name: "W",
        dims: [4, 3],
        dataType: FLOAT,
        rawData: new Uint8Array(weights.buffer),
      }),
    ],
    input: [info("float_input", ["batch", 4])],
    output: [info("logits", [3, "batch"])],
  });
  return encodeModel(graph, "test");
}

function expected(x: number[]) {
  const z = B.map((b, j) => b + x.reduce((s, xi, i) => s + xi * W[i]![j]!, 0));
  const e = z.map((v) => Math.exp(v - Math.max(...z)));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

void describe("bring your own ONNX model", () => {
  const prefix = uniquePrefix("onnx-byo");
  let repo: string;
  let api: ApiHandle;
  let worker: Spawned;

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-byo-"));
    const dir = path.join(repo, "iris-like", "1");
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "classifier.onnx"), linearModel());
    const manifest = {
      name: "iris-like",
      version: "1",
      description: "A linear classifier exported elsewhere.",
      kind: "onnx",
      file: "classifier.onnx",
      input: {
        type: "object",
        properties: {
          features: { type: "array", items: { type: "number" }, minItems: 4, maxItems: 4 },
        },
        required: ["features"],
        additionalProperties: false,
      },
      preprocessing: { type: "vector", field: "features", dimensions: 4 },
      onnx: { input: "float_input", output: "logits", activation: "softmax" },
      output: { task: "classification", labels: ["a", "b", "c"] },
      batching: { maxBatchSize: 16, maxDelayMs: 0 },
      cache: { ttlSeconds: 0 },
    };
    await writeFile(path.join(dir, "manifest.json"), JSON.stringify(manifest, null, 2));
    api = await startApi(testConfig(prefix, { MODEL_REPOSITORY: repo }));
    worker = await spawnWorker(testEnv(prefix, { MODEL_REPOSITORY: repo }));
  });
  after(async () => {
    await stop(worker);
    await api.close();
    await cleanupPrefix(prefix);
    await rm(repo, { recursive: true, force: true });
  });

  void it("serves the model file it was given, with softmax applied to its logits", async () => {
    for (const x of [
      [1, 2, 3, 4],
      [-1, 0.5, 0, 2],
      [0, 0, 0, 0],
    ]) {
      const r = await predict(api.url, "iris-like", { features: x });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const result = r.body.result as { label: string; probabilities: Record<string, number> };
      const p = expected(x);
      ["a", "b", "c"].forEach((l, i) => assert.ok(Math.abs(result.probabilities[l]! - p[i]!) < 1e-5, l));
      assert.equal(result.label, ["a", "b", "c"][p.indexOf(Math.max(...p))]);
    }
  });

  void it("rejects a number past the range of a 32-bit float with 422, not a NaN answer", async () => {
    // The schema allows any JSON number; 1e39 would become Infinity as a float32 feature.
    const posted = await call(api.url, "POST", "/api/ml/iris-like/batch", {
      inputs: [{ features: [1, 2, 3, 4] }, { features: [1e39, 0, 0, 0] }, { features: [-1, 0.5, 0, 2] }],
    });
    assert.equal(posted.status, 422, JSON.stringify(posted.body));
    assert.match((posted.body.error as { message: string }).message, /inputs\[1\]\.features\.0 must be <=/);
  });

  void it("rejects a number JSON.parse reads as Infinity with 422 naming the field", async () => {
    // Sent as written: 1e400 has no double, so it parses as -Infinity and would be queued as null.
    const r = await call(api.url, "POST", "/api/ml/iris-like", '{"features": [1, -1e400, 3, 4]}');
    assert.equal(r.status, 422, JSON.stringify(r.body));
    assert.match((r.body.error as { message: string }).message, /features\.1/);
  });

  void it("rejects input of the wrong shape with 422 naming the field", async () => {
    const r = await call(api.url, "POST", "/api/ml/iris-like", { features: [1, 2, 3] });
    assert.equal(r.status, 422);
    assert.match((r.body.error as { message: string }).message, /features/);
  });

  void it("refuses to load a model whose output is not one row per input, and serves the version before it", async () => {
    const dir = path.join(repo, "iris-like", "2");
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "classifier.onnx"), classesFirstModel());
    const manifest = JSON.parse(
      await readFile(path.join(repo, "iris-like", "1", "manifest.json"), "utf8"),
    ) as {
      version: string;
    };
    await writeFile(path.join(dir, "manifest.json"), JSON.stringify({ ...manifest, version: "2" }));
    const r = await call(api.url, "POST", "/api/admin/models/reload");
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.status, "partial", JSON.stringify(r.body));
    const failed = r.body.failed as { version: string; reason: string }[];
    assert.equal(failed[0]?.version, "2");
    assert.match(failed[0].reason, /shape \[3, 1\] for 1 row: its first dimension must be the batch/);
    // Version 1 answers each input with its own row.
    const inputs = [
      [1, 2, 3, 4],
      [-1, 0.5, 0, 2],
    ];
    const posted = await call(
      api.url,
      "POST",
      "/api/ml/iris-like/batch",
      { inputs: inputs.map((features) => ({ features })) },
      {
        prefer: "wait=30",
      },
    );
    assert.equal(posted.status, 200, JSON.stringify(posted.body));
    const jobs = posted.body.jobs as { version: string; result: { probabilities: Record<string, number> } }[];
    jobs.forEach((j, i) => {
      assert.equal(j.version, "1");
      const p = expected(inputs[i]!);
      ["a", "b", "c"].forEach((l, k) => assert.ok(Math.abs(j.result.probabilities[l]! - p[k]!) < 1e-5, l));
    });
  });
});
