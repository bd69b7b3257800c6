import { z } from "zod";
import { parseSection } from "../section.js";

/** The manifest's `onnx` section: which tensors to use, how the output becomes an answer, limits. */
export const onnxSectionSchema = z
  .object({
    /** Input tensor name (default: the model's first input). */
    input: z.string().optional(),
    /** Output tensor name (default: the model's first output). */
    output: z.string().optional(),
    /**
     * Classification only: `softmax` when the output is raw scores (logits, e.g. from PyTorch),
     * `none` when it already holds probabilities (our exporter, skl2onnx with zipmap off).
     */
    activation: z.enum(["none", "softmax"]).default("none"),
    /** Longest one inference batch of this model may take (ms; default INFERENCE_TIMEOUT_MS). */
    inferenceTimeoutMs: z.number().int().min(10).max(3_600_000).optional(),
  })
  .default({ activation: "none" });
export type OnnxSection = z.infer<typeof onnxSectionSchema>;

/** Parses a manifest's `onnx` section; the message names the bad field. */
export function parseOnnxSection(raw: unknown): OnnxSection {
  return parseSection(onnxSectionSchema, "onnx", raw);
}

export interface ClassificationOutput {
  label: string;
  probabilities: Record<string, number>;
}
export interface RegressionOutput {
  value: number;
}

/** Splits an [N, C] output into one answer per row. */
export function postprocess(
  data: Float32Array | Float64Array,
  rows: number,
  task: "classification" | "regression",
  labels: readonly string[] | undefined,
  activation: OnnxSection["activation"],
): (ClassificationOutput | RegressionOutput)[] {
  const width = data.length / rows;
  if (!Number.isInteger(width)) throw new Error(`output has ${data.length} values for ${rows} rows`);
  const out: (ClassificationOutput | RegressionOutput)[] = [];
  for (let r = 0; r < rows; r++) {
    const row = Array.from(data.subarray(r * width, (r + 1) * width));
    if (task === "regression") {
      if (width !== 1) throw new Error(`a regression model must output one value per row, got ${width}`);
      out.push({ value: row[0]! });
      continue;
    }
    if (!labels || labels.length !== width)
      throw new Error(`output has ${width} classes but the manifest names ${labels?.length ?? 0} labels`);
    const probs = activation === "softmax" ? softmax(row) : row;
    let best = 0;
    for (let i = 1; i < width; i++) if (probs[i]! > probs[best]!) best = i;
    out.push({
      label: labels[best]!,
      probabilities: Object.fromEntries(labels.map((l, i) => [l, probs[i]!])),
    });
  }
  return out;
}

export function softmax(v: readonly number[]): number[] {
  const max = Math.max(...v);
  const e = v.map((x) => Math.exp(x - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}
