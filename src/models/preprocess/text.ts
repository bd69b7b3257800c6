import { z } from "zod";

/**
 * Text → fixed-width feature vector by the hashing trick. Training and serving both call
 * `encodeText`, so a served model sees exactly the features it was trained on.
 */
export const textPreprocessingSchema = z.object({
  type: z.literal("hashed-ngrams"),
  /** The input field holding the text. */
  field: z.string().default("text"),
  /** Width of the feature vector (the model's input width). */
  dimensions: z
    .number()
    .int()
    .min(16)
    .max(1 << 20),
  /** Word n-gram lengths, e.g. [1, 2]. */
  wordNgrams: z.array(z.number().int().min(1).max(4)).default([1]),
  /** Character n-gram lengths inside words (with boundary marks), e.g. [3, 4]; [] for none. */
  charNgrams: z.array(z.number().int().min(1).max(8)).default([]),
  /** Only the first `maxChars` characters are read (long e-mails carry little after that). */
  maxChars: z.number().int().min(1).default(20_000),
  lowercase: z.boolean().default(true),
});
export type TextPreprocessing = z.infer<typeof textPreprocessingSchema>;

// Words: runs of letters/digits; plus a few symbols that carry signal on their own ($, !, %).
const TOKEN = /[\p{L}\p{N}_]+|[$€£!%]/gu;

export function tokenize(text: string, p: Pick<TextPreprocessing, "maxChars" | "lowercase">): string[] {
  let t = text.length > p.maxChars ? text.slice(0, p.maxChars) : text;
  if (p.lowercase) t = t.toLowerCase();
  return t.match(TOKEN) ?? [];
}

/** 32-bit FNV-1a over UTF-16 code units, seeded by a namespace so word and char grams differ. */
export function fnv1a(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const WORD_SEED = fnv1a("word");
const CHAR_SEED = fnv1a("char");

/**
 * Counts each hashed n-gram into its bucket with a sign taken from the hash (so collisions
 * cancel on average), damps counts with log1p, then scales the vector to unit L2 norm.
 */
export function encodeText(text: string, p: TextPreprocessing, out?: Float32Array): Float32Array {
  const dim = p.dimensions;
  const acc = new Float64Array(dim);
  const tokens = tokenize(text, p);
  const add = (h: number) => {
    acc[h % dim]! += h & 0x80000000 ? -1 : 1;
  };
  for (const n of p.wordNgrams) {
    for (let i = 0; i + n <= tokens.length; i++) {
      add(fnv1a(n === 1 ? tokens[i]! : tokens.slice(i, i + n).join(" "), WORD_SEED));
    }
  }
  if (p.charNgrams.length > 0) {
    for (const tok of tokens) {
      const w = `<${tok}>`;
      for (const n of p.charNgrams) {
        for (let i = 0; i + n <= w.length; i++) add(fnv1a(w.slice(i, i + n), CHAR_SEED));
      }
    }
  }
  let norm = 0;
  for (let i = 0; i < dim; i++) {
    const c = acc[i]!;
    if (c !== 0) {
      const v = Math.sign(c) * Math.log1p(Math.abs(c));
      acc[i] = v;
      norm += v * v;
    }
  }
  const target = out ?? new Float32Array(dim);
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  for (let i = 0; i < dim; i++) target[i] = acc[i]! * scale;
  return target;
}
