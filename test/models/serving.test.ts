import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { recipe } from "../../src/training/recipes.js";
import { datasetSplit } from "../../src/training/train.js";
import { call } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { closeTo, ONNX_MODELS, predict, referenceModel } from "./reference.js";

void describe("built-in ONNX models through HTTP → queue → worker", () => {
  const inferline = useInferline("onnx-serve", { env: { MODELS: ONNX_MODELS.join(",") }, worker: true });

  for (const name of ONNX_MODELS) {
    void it(`${name}: the served answer equals the training code's prediction within 1e-5`, async () => {
      const ref = referenceModel(name);
      const { test } = await datasetSplit(recipe(name));
      const inputs = test.slice(0, 8).map((e) => e.input);
      for (const input of inputs) {
        const r = await predict(inferline.url, name, input);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.status, "completed");
        const expected = ref.predict(input);
        const problem = closeTo(r.body.result, expected);
        assert.equal(problem, undefined, `${name}: ${problem}`);
        if ("probabilities" in expected) {
          const sum = Object.values(
            (r.body.result as { probabilities: Record<string, number> }).probabilities,
          ).reduce((a, b) => a + b, 0);
          assert.ok(Math.abs(sum - 1) < 1e-5, "probabilities sum to 1");
        }
      }
    });
  }

  const bad: Record<string, [string, unknown, string][]> = {
    spam: [
      ["missing field", {}, "text"],
      ["wrong type", { text: 42 }, "text"],
      ["empty text", { text: "" }, "text"],
      ["blank text", { text: "   " }, "text"],
      ["too long", { text: "a".repeat(100_001) }, "text"],
      ["unknown field", { text: "hi", extra: 1 }, "extra"],
    ],
    "spam-mlp": [
      ["missing field", { body: "x" }, "text"],
      ["empty text", { text: "" }, "text"],
    ],
    penguins: [
      [
        "missing field",
        { island: "Dream", bill_length_mm: 40, bill_depth_mm: 18, flipper_length_mm: 190 },
        "body_mass_g",
      ],
      [
        "wrong type",
        {
          island: "Dream",
          bill_length_mm: "40",
          bill_depth_mm: 18,
          flipper_length_mm: 190,
          body_mass_g: 3500,
        },
        "bill_length_mm",
      ],
      [
        "NaN",
        {
          island: "Dream",
          bill_length_mm: 40,
          bill_depth_mm: "NaN",
          flipper_length_mm: 190,
          body_mass_g: 3500,
        },
        "bill_depth_mm",
      ],
      [
        "unknown category",
        {
          island: "Atlantis",
          bill_length_mm: 40,
          bill_depth_mm: 18,
          flipper_length_mm: 190,
          body_mass_g: 3500,
        },
        "island",
      ],
      [
        "out of range",
        { island: "Dream", bill_length_mm: 40, bill_depth_mm: 18, flipper_length_mm: 190, body_mass_g: -5 },
        "body_mass_g",
      ],
    ],
    "cars-mpg": [
      [
        "missing field",
        {
          cylinders: 4,
          displacement_cu_in: 120,
          horsepower: 90,
          weight_lbs: 2400,
          acceleration_s: 16,
          model_year: 1978,
        },
        "origin",
      ],
      [
        "wrong type",
        {
          cylinders: 4.5,
          displacement_cu_in: 120,
          horsepower: 90,
          weight_lbs: 2400,
          acceleration_s: 16,
          model_year: 1978,
          origin: "Japan",
        },
        "cylinders",
      ],
      [
        "NaN",
        {
          cylinders: 4,
          displacement_cu_in: 120,
          horsepower: "NaN",
          weight_lbs: 2400,
          acceleration_s: 16,
          model_year: 1978,
          origin: "Japan",
        },
        "horsepower",
      ],
    ],
  };
  for (const [name, cases] of Object.entries(bad)) {
    void it(`${name}: wrong input gets 422 naming the field`, async () => {
      for (const [what, input, field] of cases) {
        const r = await call(inferline.url, "POST", `/api/ml/${name}`, input);
        assert.equal(r.status, 422, `${what}: ${JSON.stringify(r.body)}`);
        const error = r.body.error as {
          code: string;
          message: string;
          details: { problems: { field: string }[] };
        };
        assert.equal(error.code, "invalid_input");
        assert.ok(error.message.includes(field), `${what}: message names ${field}: ${error.message}`);
        assert.equal(error.details.problems[0]?.field, field, what);
      }
    });
  }

  void it("an input with several problems gets them all named in one answer", async () => {
    const r = await call(inferline.url, "POST", "/api/ml/penguins", {
      island: "Atlantis",
      bill_length_mm: 40,
      bill_depth_mm: "deep",
      flipper_length_mm: 200,
      wingspan_cm: 30,
    });
    assert.equal(r.status, 422, JSON.stringify(r.body));
    const error = r.body.error as { message: string; details: { problems: { field: string }[] } };
    const fields = error.details.problems.map((p) => p.field).sort();
    assert.deepEqual(fields, ["bill_depth_mm", "body_mass_g", "island", "wingspan_cm"]);
    for (const f of fields) assert.ok(error.message.includes(f), `message names ${f}: ${error.message}`);
    assert.match(error.message, /island must be one of "Biscoe", "Dream", "Torgersen"/);
  });

  void it("GET /api/models shows each ONNX model's schema and held-out metrics", async () => {
    const r = await call(inferline.url, "GET", "/api/models/penguins");
    assert.equal(r.status, 200);
    const v = (r.body.versions as { kind: string; training: { metrics: { accuracy: number } } }[])[0]!;
    assert.equal(v.kind, "onnx");
    assert.ok(v.training.metrics.accuracy >= 0.97);
  });
});
