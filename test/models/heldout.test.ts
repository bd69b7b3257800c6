import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { evaluateCommitted } from "../../src/training/evaluate.js";
import { RECIPES, recipe } from "../../src/training/recipes.js";
import { trainRecipe } from "../../src/training/train.js";
import { MODELS_DIR } from "./reference.js";

void describe("committed built-in models on their held-out splits", () => {
  for (const r of RECIPES) {
    void it(`${r.name} meets its threshold (${r.threshold.metric})`, async () => {
      const e = await evaluateCommitted(r, MODELS_DIR);
      if (r.threshold.metric === "accuracy")
        assert.ok(e.metrics.accuracy! >= r.threshold.min, JSON.stringify(e.metrics));
      else assert.ok(e.metrics.rmse! <= r.threshold.max, JSON.stringify(e.metrics));
      assert.equal(e.passed, true);
      // The manifest reports what evaluation measures: training and serving agree on the split.
      const manifest = JSON.parse(
        await readFile(path.join(MODELS_DIR, r.name, "1", "manifest.json"), "utf8"),
      ) as {
        training: { metrics: Record<string, number> };
      };
      const key = r.threshold.metric;
      assert.ok(
        Math.abs(manifest.training.metrics[key]! - e.metrics[key]!) < 1e-3,
        `${key} in manifest vs evaluated`,
      );
    });
  }
});

void describe("training is deterministic", () => {
  for (const name of ["penguins", "cars-mpg"]) {
    void it(`inferline train ${name} reproduces the committed model file byte for byte`, async () => {
      const dir = await mkdtemp(path.join(tmpdir(), "inferline-train-"));
      try {
        await trainRecipe(recipe(name), dir, { progress: false });
        const fresh = await readFile(path.join(dir, name, "1", "model.onnx"));
        const committed = await readFile(path.join(MODELS_DIR, name, "1", "model.onnx"));
        assert.ok(fresh.equals(committed), "same seed, same split, same bytes");
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
