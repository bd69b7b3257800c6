import { z } from "zod";
import { parseSection } from "../section.js";
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
          v.forEach((x: unknown, i) => {
            // Not Number(x): "7", true, null and [7] would become features without a word.
            if (typeof x !== "number") throw new TypeError(`${p.field}[${i}] must be a number`);
            target[i] = x;
            // 1e39 is a JSON number but no 32-bit float: the model would answer NaN.
            if (!Number.isFinite(target[i]))
              throw new TypeError(`${p.field}[${i}] must be a number within the range of a 32-bit float`);
          });
          return target;
        },
      };
  }
}

/** The largest finite 32-bit float: past it (either sign) a feature becomes Infinity. */
export const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * A JSON Schema of what the encoder needs from an input beyond the manifest's own schema: the
 * field's type, a vector's length, a category among the trained ones, numbers that stay finite
 * as 32-bit floats (once standardised). The API checks it along with the manifest's schema and
 * the worker checks it again, so an input the encoder would refuse is answered 422 naming the
 * field instead of failing its job after it was accepted, or, worse, being coerced.
 */
export function featureSchema(p: Preprocessing): Record<string, unknown> {
  const object = (properties: Record<string, unknown>, required: string[]) => ({
    type: "object",
    properties,
    required,
  });
  switch (p.type) {
    case "hashed-ngrams":
      return object({ [p.field]: { type: "string" } }, [p.field]);
    case "vector":
      return object(
        {
          [p.field]: {
            type: "array",
            minItems: p.dimensions,
            maxItems: p.dimensions,
            items: { type: "number", minimum: -FLOAT32_MAX, maximum: FLOAT32_MAX },
          },
        },
        [p.field],
      );
    case "tabular": {
      const properties: Record<string, unknown> = {};
      const required: string[] = [];
      for (const f of p.features) {
        if (f.kind === "categorical") {
          // Absent: all zeros (none of the categories). Present: one the model was trained on.
          properties[f.name] = { enum: f.values };
          continue;
        }
        required.push(f.name);
        const low = f.mean - f.std * FLOAT32_MAX;
        const high = f.mean + f.std * FLOAT32_MAX;
        properties[f.name] = {
          type: "number",
          ...(Number.isFinite(low) ? { minimum: low } : {}),
          ...(Number.isFinite(high) ? { maximum: high } : {}),
        };
      }
      return object(properties, required);
    }
  }
}

/** Parses a manifest's `preprocessing` section; the message names the bad field. */
export function parsePreprocessing(raw: unknown): Preprocessing {
  return parseSection(preprocessingSchema, "preprocessing", raw);
}
