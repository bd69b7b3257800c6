import { evaluateCommitted } from "./evaluate.js";
import { RECIPES, recipe, type Threshold } from "./recipes.js";
import { trainRecipe } from "./train.js";

export interface TrainCommandOptions {
  /** Model repository to write to (or read from, with `evaluate`). */
  readonly repository: string;
  /** Only re-evaluate the committed models on their held-out splits. */
  readonly evaluate: boolean;
  /** The version folder to write (or re-check). */
  readonly version: string;
  readonly print: (line: string) => void;
}

const bar = (t: Threshold) => (t.metric === "accuracy" ? `accuracy >= ${t.min}` : `rmse <= ${t.max}`);

/**
 * `inferline train [name]`: trains the named built-in model (or all of them) and writes it into
 * the repository as `version`, or with `--evaluate` re-checks that version. Resolves to false when a
 * model misses its held-out threshold.
 */
export async function trainCommand(names: readonly string[], o: TrainCommandOptions): Promise<boolean> {
  const recipes = names.length > 0 ? names.map(recipe) : RECIPES;
  let ok = true;
  for (const r of recipes) {
    const result = o.evaluate
      ? await evaluateCommitted(r, o.repository, o.version)
      : await trainRecipe(r, o.repository, { version: o.version });
    ok &&= result.passed;
    const metrics = Object.entries(result.metrics)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    o.print(
      `${r.name.padEnd(10)} held-out ${metrics}  (${bar(r.threshold)}: ${result.passed ? "pass" : "FAIL"})`,
    );
  }
  return ok;
}
