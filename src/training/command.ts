import { access, constants, mkdir, stat } from "node:fs/promises";
import path from "node:path";
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
  /** Where a model that could not be trained or evaluated is reported (the others go on). */
  readonly printError: (line: string) => void;
}

const bar = (t: Threshold) => (t.metric === "accuracy" ? `accuracy >= ${t.min}` : `rmse <= ${t.max}`);

/**
 * `inferline train [name]`: trains the named built-in models (or all of them) and writes each
 * that meets its held-out threshold into the repository as `version`, or with `--evaluate`
 * re-checks that version. Resolves to false when a model misses its threshold or fails; the
 * others are still trained or checked.
 */
export async function trainCommand(names: readonly string[], o: TrainCommandOptions): Promise<boolean> {
  const recipes = names.length > 0 ? [...new Set(names)].map(recipe) : RECIPES;
  // A repository that cannot be written is found out before minutes of training, not after.
  if (!o.evaluate)
    await writableRepository(
      o.repository,
      recipes.map((r) => r.name),
    );
  let ok = true;
  for (const r of recipes) {
    try {
      const result = o.evaluate
        ? await evaluateCommitted(r, o.repository, o.version)
        : await trainRecipe(r, o.repository, { version: o.version });
      ok &&= result.passed;
      const metrics = Object.entries(result.metrics)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ");
      const verdict = result.passed ? "pass" : o.evaluate ? "FAIL" : "FAIL; not written";
      o.print(`${r.name.padEnd(10)} held-out ${metrics}  (${bar(r.threshold)}: ${verdict})`);
    } catch (err) {
      ok = false;
      o.printError((err as Error).message);
    }
  }
  return ok;
}

/**
 * Creates the repository if need be, and checks this process may write into it and into the
 * folders of the models it will write (those that exist: a missing one is made in the repository).
 */
async function writableRepository(repo: string, models: readonly string[]): Promise<void> {
  if (repo.trim() === "") throw new Error("--repository must name a folder");
  const writable = async (dir: string) => {
    if (!(await stat(dir)).isDirectory()) throw new Error(`${dir} is not a folder`);
    await access(dir, constants.W_OK);
  };
  const exists = (dir: string) => stat(dir).then(Boolean, () => false);
  try {
    await mkdir(repo, { recursive: true });
    await writable(repo);
    for (const name of models) {
      const dir = path.join(repo, name);
      if (await exists(dir)) await writable(dir);
    }
  } catch (err) {
    throw new Error(`cannot write models into ${repo}: ${(err as Error).message}`, { cause: err });
  }
}
