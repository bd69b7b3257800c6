import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { ModelCatalog } from "../../src/models/catalog.js";
import { InputValidator } from "../../src/models/validation.js";
import { Mlp } from "../../src/training/mlp.js";
import { exportMlp } from "../../src/training/onnx-export.js";
import { testConfig, testEnv } from "../support/config.js";
import { call } from "../support/http.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import { predict } from "./reference.js";

/**
 * Manifests written the way people write them: input schemas that say less than the
 * preprocessing needs (an array of anything, a category as any string, a number without bounds).
 * What the preprocessing cannot encode is still answered 422 naming the field, by the API and by
 * the worker alike, rather than accepted and then failed, or coerced into a garbage answer.
 */
async function writeModel(repo: string, name: string, width: number, manifest: Record<string, unknown>) {
  const dir = path.join(repo, name, "1");
  await mkdir(dir, { recursive: true });
  const m = Mlp.init([width, 2], "softmax-cross-entropy", 3);
  await writeFile(path.join(dir, "model.onnx"), exportMlp(m));
  await writeFile(
    path.join(dir, "manifest.json"),
    JSON.stringify({
      name,
      version: "1",
      kind: "onnx",
      file: "model.onnx",
      output: { task: "classification", labels: ["no", "yes"] },
      cache: { ttlSeconds: 0 },
      ...manifest,
    }),
  );
}

void describe("inputs the preprocessing cannot encode", () => {
  const prefix = uniquePrefix("feature-validation");
  let repo: string;
  let api: ApiHandle;
  let worker: Spawned;

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-features-"));
    await writeModel(repo, "lax-vector", 4, {
      input: { type: "object", properties: { features: { type: "array" } } },
      preprocessing: { type: "vector", field: "features", dimensions: 4 },
    });
    await writeModel(repo, "lax-tabular", 3, {
      input: {
        type: "object",
        properties: { colour: { type: "string" }, size: { type: "number" } },
        required: ["size"],
      },
      preprocessing: {
        type: "tabular",
        features: [
          { name: "colour", kind: "categorical", values: ["red", "blue"] },
          { name: "size", kind: "numeric", mean: 0, std: 1e-30 },
        ],
      },
    });
    api = await startApi(testConfig(prefix, { MODEL_REPOSITORY: repo }));
    worker = await spawnWorker(testEnv(prefix, { MODEL_REPOSITORY: repo }));
  });
  after(async () => {
    await stop(worker);
    await api.close();
    await cleanupPrefix(prefix);
    await rm(repo, { recursive: true, force: true });
  });

  const rejected: [string, unknown, RegExp][] = [
    // Number("7"), Number(true), Number(null), Number([7]): numbers nobody sent.
    ["lax-vector", { features: ["7", true, null, [7]] }, /features\.0 must be number/],
    ["lax-vector", { features: [1, 2, 3] }, /features must NOT have fewer than 4 items/],
    ["lax-vector", { features: [1e39, 0, 0, 0] }, /features\.0 must be <= 3\.4/],
    ["lax-vector", {}, /features is required/],
    // A category the model never saw would be encoded as "none of them".
    ["lax-tabular", { colour: "green", size: 1 }, /colour must be one of "red", "blue"/],
    // Finite as a number, past a 32-bit float once standardised by std 1e-30.
    ["lax-tabular", { size: 1e10 }, /size must be <=/],
  ];

  void it("answers 422 naming the field instead of queueing the input", async () => {
    for (const [model, input, message] of rejected) {
      const r = await call(api.url, "POST", `/api/ml/${model}`, input);
      assert.equal(r.status, 422, `${model} ${JSON.stringify(input)}: ${JSON.stringify(r.body)}`);
      assert.match((r.body.error as { message: string }).message, message);
    }
  });

  void it("the worker's check of a queued input gives the same answer as the API's", async () => {
    // What a worker process builds from the same repository.
    const catalog = await ModelCatalog.load(repo);
    const validator = new InputValidator();
    for (const [model, input, message] of rejected) {
      const problems = validator.check(catalog.resolve(model), input);
      assert.match(problems.map((p) => `${p.field} ${p.message}`).join("; "), message);
    }
  });

  void it("serves what it can encode: numbers, a known category, an absent one", async () => {
    for (const [model, input] of [
      ["lax-vector", { features: [1, -0, 0.5, 3.4e38] }],
      ["lax-tabular", { colour: "blue", size: 1e-29 }],
      ["lax-tabular", { size: -1e-29 }],
    ] as const) {
      const r = await predict(api.url, model, input);
      assert.equal(r.status, 200, `${model} ${JSON.stringify(input)}: ${JSON.stringify(r.body)}`);
      const result = r.body.result as { probabilities: Record<string, number> };
      for (const p of Object.values(result.probabilities)) assert.ok(Number.isFinite(p));
    }
  });
});
