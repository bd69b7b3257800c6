import { z } from "zod";

/** Adds an issue at the second of any value listed twice (at `key` within it, if given). */
function noRepeats(values: readonly string[], ctx: z.RefinementCtx, key?: string): void {
  values.forEach((v, i) => {
    if (values.indexOf(v) !== i)
      ctx.addIssue({
        code: "custom",
        path: key === undefined ? [i] : [i, key],
        message: `${JSON.stringify(v)} is listed twice`,
      });
  });
}

/** One input column: a number standardised by its training mean and spread, or a one-hot category. */
const numericFeature = z.object({
  name: z.string().min(1),
  kind: z.literal("numeric"),
  mean: z.number(),
  std: z.number().positive(),
});
const categoricalFeature = z.object({
  name: z.string().min(1),
  kind: z.literal("categorical"),
  // Each value is one column of the model's input: a repeated one would leave it unclear which.
  values: z.array(z.string()).min(1).superRefine(noRepeats),
});

/** Tabular inputs → features in the order the model was trained on. */
export const tabularPreprocessingSchema = z.object({
  type: z.literal("tabular"),
  features: z
    .array(z.discriminatedUnion("kind", [numericFeature, categoricalFeature]))
    .min(1)
    .superRefine((features, ctx) =>
      noRepeats(
        features.map((f) => f.name),
        ctx,
        "name",
      ),
    ),
});
export type TabularPreprocessing = z.infer<typeof tabularPreprocessingSchema>;
export type TabularFeature = TabularPreprocessing["features"][number];

export function tabularWidth(p: TabularPreprocessing): number {
  return p.features.reduce((n, f) => n + (f.kind === "numeric" ? 1 : f.values.length), 0);
}

/**
 * Writes one row. An absent categorical value encodes as all zeros (none of the categories);
 * one the model was not trained on is refused, not silently encoded as absent.
 */
export function encodeTabular(
  row: Readonly<Record<string, unknown>>,
  p: TabularPreprocessing,
  out?: Float32Array,
): Float32Array {
  const target = out ?? new Float32Array(tabularWidth(p));
  let j = 0;
  for (const f of p.features) {
    const v = row[f.name];
    if (f.kind === "numeric") {
      if (typeof v !== "number" || !Number.isFinite(v))
        throw new TypeError(`${f.name} must be a finite number`);
      target[j] = (v - f.mean) / f.std;
      // Finite as a JSON number, yet past the range of a 32-bit float once standardised.
      if (!Number.isFinite(target[j++]))
        throw new TypeError(`${f.name} is too large in magnitude for this model`);
    } else {
      if (v !== undefined && !f.values.includes(v as string))
        throw new TypeError(`${f.name} must be one of ${f.values.map((x) => JSON.stringify(x)).join(", ")}`);
      for (const value of f.values) target[j++] = v === value ? 1 : 0;
    }
  }
  return target;
}
