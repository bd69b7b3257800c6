import { readFileSync } from "node:fs";
import { cp, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { makeEncoder, parsePreprocessing } from "../../src/models/preprocess/index.js";
import { toSparse } from "../../src/training/mlp.js";
import { importMlp } from "../../src/training/onnx-export.js";
import { call } from "../support/http.js";
import { ROOT } from "../support/processes.js";

export const MODELS_DIR = path.join(ROOT, "models");
/** A valid penguins input (an Adélie penguin). */
export const ADELIE = {
  island: "Torgersen",
  bill_length_mm: 39,
  bill_depth_mm: 18.7,
  flipper_length_mm: 181,
  body_mass_g: 3750,
};

export const ONNX_MODELS = ["spam", "spam-mlp", "penguins", "cars-mpg"] as const;

/** A manifest as the model tests edit it. */
export interface EditableManifest {
  name: string;
  version: string;
  input: { properties: Record<string, Record<string, unknown>> };
  output: { labels: string[] };
}

/**
 * Writes `<repo>/penguins/<version>/` (or `<repo>/<name>/<version>/`): the committed penguins model with its manifest passed
 * through `edit`, or (`broken`) a model file ONNX Runtime cannot load.
 */
export async function addPenguinsVersion(
  repo: string,
  version: string,
  /** `name`: the same model under another name. */
  opts: { broken?: boolean; edit?: (m: EditableManifest) => void; name?: string } = {},
): Promise<void> {
  const dir = path.join(repo, opts.name ?? "penguins", version);
  await mkdir(dir, { recursive: true });
  const manifest = JSON.parse(
    await readFile(path.join(MODELS_DIR, "penguins", "1", "manifest.json"), "utf8"),
  ) as EditableManifest;
  manifest.version = version;
  if (opts.name) manifest.name = opts.name;
  opts.edit?.(manifest);
  await writeFile(path.join(dir, "manifest.json"), JSON.stringify(manifest));
  if (opts.broken) await writeFile(path.join(dir, "model.onnx"), "this is not an ONNX model");
  else await cp(path.join(MODELS_DIR, "penguins", "1", "model.onnx"), path.join(dir, "model.onnx"));
}

interface Manifest {
  file: string;
  preprocessing: unknown;
  output: { task: "classification" | "regression"; labels?: string[] };
}

/**
 * The training code's own prediction for a committed model: the manifest's preprocessing and
 * the network's forward pass in plain TypeScript, on the weights read back from the ONNX file.
 */
export function referenceModel(name: string, repo = MODELS_DIR) {
  const dir = path.join(repo, name, "1");
  const manifest = JSON.parse(readFileSync(path.join(dir, "manifest.json"), "utf8")) as Manifest;
  const regression = manifest.output.task === "regression";
  const mlp = importMlp(
    readFileSync(path.join(dir, manifest.file)),
    regression ? "mse" : "softmax-cross-entropy",
  );
  const encoder = makeEncoder(parsePreprocessing(manifest.preprocessing));
  return {
    manifest,
    predict(input: unknown): { value: number } | { label: string; probabilities: Record<string, number> } {
      const out = mlp.predict(toSparse(encoder.encode(input)));
      if (regression) return { value: out[0]! };
      const labels = manifest.output.labels!;
      let best = 0;
      for (let i = 1; i < out.length; i++) if (out[i]! > out[best]!) best = i;
      return { label: labels[best]!, probabilities: Object.fromEntries(labels.map((l, i) => [l, out[i]!])) };
    },
  };
}

/** Asserts two answers agree: same label, every number within `tol`. */
export function closeTo(actual: unknown, expected: unknown, tol = 1e-5): string | undefined {
  if (typeof expected === "number") {
    if (typeof actual !== "number" || Math.abs(actual - expected) > tol)
      return `${String(actual)} != ${expected} (tolerance ${tol})`;
    return undefined;
  }
  if (typeof expected === "string")
    return actual === expected ? undefined : `${String(actual)} != ${expected}`;
  if (expected && typeof expected === "object") {
    if (!actual || typeof actual !== "object") return `${JSON.stringify(actual)} is not an object`;
    for (const [k, v] of Object.entries(expected)) {
      const problem = closeTo((actual as Record<string, unknown>)[k], v, tol);
      if (problem) return `${k}: ${problem}`;
    }
  }
  return undefined;
}

/**
 * Submits one input and waits for its job. The result is read with GET (idempotent), retried
 * on a 500: reading a job at the instant it completes can race (see the queue module).
 */
export async function predict(
  base: string,
  model: string,
  input: unknown,
  waitSeconds = 30,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const posted = await call(base, "POST", `/api/ml/${model}`, input);
  if (posted.status !== 202 && posted.status !== 200) return posted;
  if (posted.status === 200) return posted;
  const id = String(posted.body.job_id);
  for (let attempt = 0; ; attempt++) {
    const r = await call(base, "GET", `/api/results/${id}`, undefined, { prefer: `wait=${waitSeconds}` });
    if (r.status !== 500 || attempt >= 3) return r;
  }
}
