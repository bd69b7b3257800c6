import { readFile } from "node:fs/promises";
import path from "node:path";
import "../models/onnx/no-telemetry.js";
import ort from "onnxruntime-node";
import { makeEncoder, parsePreprocessing } from "../models/preprocess/index.js";
import { classificationMetrics, regressionMetrics, type Metrics } from "./metrics.js";
import type { Recipe } from "./recipes.js";
import { datasetSplit, meetsThreshold, targetOf } from "./train.js";

export interface Evaluation {
  readonly name: string;
  readonly metrics: Metrics;
  readonly passed: boolean;
  readonly threshold: Recipe["threshold"];
}

interface CommittedManifest {
  file: string;
  preprocessing: unknown;
  onnx?: { input?: string; output?: string };
  training?: { seed?: number; split?: { test_fraction?: number } };
}

/**
 * Re-evaluates a committed model on its held-out split: the split is rebuilt from the seed and
 * share recorded in its manifest, the inputs go through the manifest's preprocessing and the
 * committed ONNX file runs in ONNX Runtime, exactly as a worker would run it.
 */
export async function evaluateCommitted(r: Recipe, repo: string, version = "1"): Promise<Evaluation> {
  const dir = path.join(repo, r.name, version);
  const text = await readFile(path.join(dir, "manifest.json"), "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT" && err.code !== "ENOTDIR") throw err;
    throw new Error(
      `${r.name} has no version ${version} in ${repo} to evaluate (no ${path.join(dir, "manifest.json")}); ` +
        `train it first: inferline train ${r.name} --model-version ${version}`,
    );
  });
  const manifestFile = path.join(dir, "manifest.json");
  let manifest: CommittedManifest;
  try {
    manifest = JSON.parse(text) as CommittedManifest;
  } catch (err) {
    throw new Error(`${manifestFile} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  // Without the seed and share of its split, there is no held-out part to evaluate it on.
  if (
    typeof manifest.training?.seed !== "number" ||
    typeof manifest.training.split?.test_fraction !== "number"
  )
    throw new Error(
      `${r.name} version ${version} was not made by inferline train: ${manifestFile} records no ` +
        "training.seed and training.split.test_fraction to rebuild its held-out split from",
    );
  const { test } = await datasetSplit(r, manifest.training.seed, manifest.training.split.test_fraction);
  const encoder = makeEncoder(parsePreprocessing(manifest.preprocessing));
  const session = await ort.InferenceSession.create(path.join(dir, manifest.file), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  try {
    const inputName = manifest.onnx?.input ?? session.inputNames[0]!;
    const outputName = manifest.onnx?.output ?? session.outputNames[0]!;
    const data = new Float32Array(test.length * encoder.width);
    test.forEach((e, i) =>
      encoder.encode(e.input, data.subarray(i * encoder.width, (i + 1) * encoder.width)),
    );
    const out = await session.run(
      { [inputName]: new ort.Tensor("float32", data, [test.length, encoder.width]) },
      [outputName],
    );
    const values = out[outputName]!.data as Float32Array;
    const width = values.length / test.length;
    const rows = test.map((_, i) => values.subarray(i * width, (i + 1) * width));
    const targets = test.map((e) => targetOf(r, e));
    const metrics =
      r.task === "regression"
        ? regressionMetrics(
            rows.map((v) => v[0]!),
            targets,
          )
        : classificationMetrics(rows, targets);
    return { name: r.name, metrics, passed: meetsThreshold(r.threshold, metrics), threshold: r.threshold };
  } finally {
    await session.release();
  }
}
