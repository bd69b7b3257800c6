import { z } from "zod";

const jsonSchemaObject = z
  .record(z.string(), z.unknown())
  .refine((s) => s.type === "object", "input must be a JSON Schema of type object");

/** manifest.json of one model version, as written on disk. */
/** A version folder's name: a positive integer without leading zeros. */
export const VERSION_FORMAT = /^[1-9][0-9]{0,8}$/;

export const manifestSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "lowercase letters, digits and dashes"),
    // No leading zeros: "01" would be a second version 1, and which of them is latest, chance.
    version: z.string().regex(VERSION_FORMAT, 'a positive integer without leading zeros, e.g. "1"'),
    description: z.string().default(""),
    kind: z.enum(["builtin", "onnx"]),
    /** kind builtin: which built-in implementation. */
    builtin: z.string().optional(),
    /** kind onnx: model file name inside the version folder (a name, not a path). */
    file: z
      .string()
      .regex(/^(?!\.\.?$)[^/\\]+$/, "a file name inside the version folder, without a path")
      .optional(),
    input: jsonSchemaObject,
    preprocessing: z.record(z.string(), z.unknown()).optional(),
    output: z
      .object({
        task: z.enum(["classification", "regression", "sentiment", "diagnostic"]),
        labels: z.array(z.string()).optional(),
      })
      .passthrough(),
    batching: z
      .object({
        maxBatchSize: z.number().int().min(1).max(4096).default(32),
        maxDelayMs: z.number().min(0).max(10_000).default(0),
      })
      .default({ maxBatchSize: 32, maxDelayMs: 0 }),
    cache: z.object({ ttlSeconds: z.number().int().min(0).default(3600) }).default({ ttlSeconds: 3600 }),
    limits: z.object({ maxQueueDepth: z.number().int().min(1).optional() }).optional(),
    training: z.record(z.string(), z.unknown()).optional(),
  })
  .passthrough()
  .superRefine((m, ctx) => {
    if (m.kind === "builtin" && !m.builtin)
      ctx.addIssue({ code: "custom", path: ["builtin"], message: "required when kind is builtin" });
    if (m.kind === "onnx" && !m.file)
      ctx.addIssue({ code: "custom", path: ["file"], message: "required when kind is onnx" });
    if (m.kind === "onnx" && m.output.task !== "classification" && m.output.task !== "regression")
      ctx.addIssue({
        code: "custom",
        path: ["output", "task"],
        message: "an onnx model's task is classification or regression",
      });
    // Labels name the output's columns and key the probabilities: a missing one would fail every
    // job, and a repeated one would answer with one probability fewer than the model gave.
    if (m.output.task === "classification") {
      const labels = m.output.labels ?? [];
      if (labels.length < 2)
        ctx.addIssue({
          code: "custom",
          path: ["output", "labels"],
          message: "a classifier needs two labels or more",
        });
      const repeated = labels.find((l, i) => labels.indexOf(l) !== i);
      if (repeated !== undefined)
        ctx.addIssue({
          code: "custom",
          path: ["output", "labels"],
          message: `${JSON.stringify(repeated)} is listed twice`,
        });
    }
  });

export type Manifest = z.infer<typeof manifestSchema>;
