import path from "node:path";
import { descriptorFrom } from "../models/catalog.js";
import { makeEncoder } from "../models/preprocess/index.js";
import type { Example } from "./datasets.js";
import { classificationMetrics, regressionMetrics, type Metrics } from "./metrics.js";
import { Mlp, toSparse, train, type SparseRow } from "./mlp.js";
import { exportMlp } from "./onnx-export.js";
import { progressBar } from "./progress.js";
import type { Recipe, Threshold } from "./recipes.js";
import { split } from "./rng.js";
import { writeVersionFolder } from "./version-folder.js";

export const MODEL_FILE = "model.onnx";

export interface TrainReport {
  readonly name: string;
  readonly metrics: Metrics;
  readonly passed: boolean;
  /** The version folder. */
  readonly dir: string;
  /** Whether it was written: a model that misses its threshold is not. */
  readonly written: boolean;
  /** Size of the model file written (0 when none was). */
  readonly bytes: number;
}

/** The split every consumer (training, evaluation, tests) uses for a recipe. */
export async function datasetSplit(r: Recipe, seed = r.seed, testFraction = r.testFraction) {
  return split(await r.load(), seed, testFraction);
}

export function targetOf(r: Recipe, e: Example): number {
  if (r.task === "regression") return e.target as number;
  const i = r.labels!.indexOf(e.target as string);
  if (i < 0) throw new Error(`${r.name}: unknown label ${String(e.target)}`);
  return i;
}

export function meetsThreshold(t: Threshold, m: Metrics): boolean {
  return t.metric === "accuracy" ? (m.accuracy ?? 0) >= t.min : (m.rmse ?? Infinity) <= t.max;
}

/**
 * Trains one built-in model from its recipe and, when it meets its held-out threshold, writes
 * `<repo>/<name>/<version>/` (model.onnx and manifest.json; version 1 unless given), replacing
 * that folder whole (see writeVersionFolder). A model that misses it is not written, so a failed
 * run never replaces a working version or offers a reload a worse one; a manifest a worker would
 * refuse is an error. Deterministic: the same recipe gives byte-identical model.onnx.
 */
export async function trainRecipe(
  r: Recipe,
  repo: string,
  options: { readonly now?: Date; readonly progress?: boolean; readonly version?: string } = {},
): Promise<TrainReport> {
  const now = options.now ?? new Date();
  const { train: trainRows, test: testRows } = await datasetSplit(r);
  if (trainRows.length === 0 || testRows.length === 0)
    throw new Error(
      `${r.name}: ${trainRows.length + testRows.length} usable rows in ${r.dataset.name}; ` +
        "training needs rows to learn from and rows to hold out",
    );
  const preprocessing = r.preprocessing(trainRows);
  const encoder = makeEncoder(preprocessing);
  const encode = (rows: readonly Example[]): SparseRow[] =>
    rows.map((e) => toSparse(encoder.encode(e.input)));
  const xTrain = encode(trainRows);
  const xTest = encode(testRows);
  let yTrain = trainRows.map((e) => targetOf(r, e));
  const yTest = testRows.map((e) => targetOf(r, e));

  // Regression trains on a standardised target; the scale is folded back into the last layer.
  let yMean = 0;
  let yStd = 1;
  if (r.task === "regression") {
    yMean = yTrain.reduce((a, b) => a + b, 0) / yTrain.length;
    yStd = Math.sqrt(yTrain.reduce((a, b) => a + (b - yMean) ** 2, 0) / yTrain.length);
    yTrain = yTrain.map((y) => (y - yMean) / yStd);
  }
  const outputs = r.task === "regression" ? 1 : r.labels!.length;
  const model = Mlp.init([encoder.width, ...r.hidden, outputs], r.loss, r.seed);
  const bar = options.progress === false ? { update: () => {}, done: () => {} } : progressBar(r.name);
  train(model, xTrain, yTrain, {
    ...r.training,
    seed: r.seed,
    onProgress: (f, loss) => bar.update(f, `loss ${loss.toFixed(4)}`),
  });
  if (r.task === "regression") {
    const last = model.layers.at(-1)!;
    for (let i = 0; i < last.weights.length; i++) last.weights[i]! *= yStd;
    last.bias[0] = last.bias[0]! * yStd + yMean;
  }

  const predictions = xTest.map((x) => model.predict(x));
  const metrics =
    r.task === "regression"
      ? regressionMetrics(
          predictions.map((p) => p[0]!),
          yTest,
        )
      : classificationMetrics(predictions, yTest);
  const passed = meetsThreshold(r.threshold, metrics);
  bar.done(
    Object.entries(metrics)
      .map(([k, v]) => `${k} ${v}`)
      .join("  "),
  );

  const version = options.version ?? "1";
  const dir = path.join(repo, r.name, version);
  if (!passed) return { name: r.name, metrics, passed, dir, written: false, bytes: 0 };
  const bytes = exportMlp(model, { docString: `${r.name}: ${r.description}` });
  const manifest = `${JSON.stringify(manifestFor(r, version, preprocessing, model, metrics, trainRows.length, now), null, 2)}\n`;
  // Read back as a worker would: JSON has no Infinity or NaN (a statistic that overflowed is
  // written as null), and a manifest no worker loads must not replace one that works.
  try {
    descriptorFrom(JSON.parse(manifest), dir, r.name, version);
  } catch (err) {
    throw new Error(`${r.name}: not written, as no worker would load it: ${(err as Error).message}`, {
      cause: err,
    });
  }
  // Whole or not at all: workers may be reading or reloading this repository right now.
  await writeVersionFolder(dir, { [MODEL_FILE]: bytes, "manifest.json": manifest });
  return { name: r.name, metrics, passed, dir, written: true, bytes: bytes.length };
}

function manifestFor(
  r: Recipe,
  version: string,
  preprocessing: unknown,
  model: Mlp,
  metrics: Metrics,
  trainRows: number,
  now: Date,
) {
  return {
    name: r.name,
    version,
    description: r.description,
    kind: "onnx",
    file: MODEL_FILE,
    input: r.input,
    preprocessing,
    onnx: {
      input: "features",
      output: r.task === "regression" ? "value" : "probabilities",
      activation: "none",
    },
    output:
      r.task === "regression"
        ? { task: "regression", unit: "miles per gallon" }
        : { task: "classification", labels: r.labels },
    batching: r.batching,
    cache: { ttlSeconds: r.cacheTtlSeconds },
    training: {
      dataset: r.dataset.name,
      source: r.dataset.source,
      seed: r.seed,
      split: {
        method: "seeded shuffle, first share held out",
        test_fraction: r.testFraction,
        train_rows: trainRows,
        test_rows: metrics.rows,
      },
      architecture: {
        layers: model.layers.map((l) => [l.inputs, l.outputs]),
        // Between hidden layers only: a network without one is a linear model.
        activation: model.layers.length > 1 ? "relu" : "none",
        parameters: model.parameterCount(),
      },
      optimiser: { name: "adam", ...r.training },
      metrics,
      threshold: r.threshold,
      trained_at: now.toISOString(),
      command: `inferline train ${r.name}${version === "1" ? "" : ` --model-version ${version}`}`,
    },
  };
}
