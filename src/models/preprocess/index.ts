import { z } from "zod";
import { encodeTabular, tabularPreprocessingSchema, tabularWidth } from "./tabular.js";
import { encodeText, textPreprocessingSchema } from "./text.js";

export const preprocessingSchema = z.discriminatedUnion("type", [
  textPreprocessingSchema,
  tabularPreprocessingSchema,
  z.object({
    /** The input already is the feature vector: `{ [field]: number[] }`. */
    type: z.literal("vector"),
    field: z.string().default("features"),
    dimensions: z.number().int().min(1),
  }),
]);
export type Preprocessing = z.infer<typeof preprocessingSchema>;

/** Turns one validated input into the model's feature row. */
export interface Encoder {
  readonly width: number;
  encode(input: unknown, out?: Float32Array): Float32Array;
}

export function makeEncoder(p: Preprocessing): Encoder {
  switch (p.type) {
    case "hashed-ngrams":
      return {
        width: p.dimensions,
        encode: (input, out) => {
          const text = (input as Record<string, unknown>)[p.field];
          if (typeof text !== "string") throw new TypeError(`${p.field} must be a string`);
          return encodeText(text, p, out);
        },
      };
    case "tabular":
      return {
        width: tabularWidth(p),
        encode: (input, out) => encodeTabular(input as Record<string, unknown>, p, out),
      };
    case "vector":
      return {
        width: p.dimensions,
        encode: (input, out) => {
          const v = (input as Record<string, unknown>)[p.field];
          if (!Array.isArray(v) || v.length !== p.dimensions)
            throw new TypeError(`${p.field} must be an array of ${p.dimensions} numbers`);
          const target = out ?? new Float32Array(p.dimensions);
          v.forEach((x, i) => {
            target[i] = Number(x);
            // 1e39 is a JSON number but no 32-bit float: the model would answer NaN.
            if (!Number.isFinite(target[i]))
              throw new TypeError(`${p.field}[${i}] must be a number within the range of a 32-bit float`);
          });
          return target;
        },
      };
  }
}

/** Parses a manifest's `preprocessing` section; the message names the bad field. */
export function parsePreprocessing(raw: unknown): Preprocessing {
  const parsed = preprocessingSchema.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new Error(`preprocessing.${first?.path.join(".") ?? ""}: ${first?.message ?? "invalid"}`);
  }
  return parsed.data;
}
