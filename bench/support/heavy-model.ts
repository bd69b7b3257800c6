import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Mlp } from "../../src/training/mlp.js";
import { exportMlp } from "../../src/training/onnx-export.js";
import { ROOT } from "./processes.js";

/** The 25 M-parameter stand-in (2048 → 4096 → 4096 → 2) the batching scenario uses. */
export const WIDE_LAYERS = [2048, 4096, 4096, 2] as const;
/** A smaller stand-in for --quick runs: same input, a fraction of the cost to build and load. */
export const QUICK_LAYERS = [2048, 1024, 1024, 2] as const;

/**
 * A model repository in a temp dir holding one heavy model: a stand-in network with random
 * weights (its cost, not its answers, is what is measured) behind the spam-mlp manifest
 * (text in, hashed n-grams of 2048 dimensions), cache off so every request is inferred.
 */
export async function heavyModelRepo(opts: {
  name: string;
  layers: readonly number[];
  maxBatchSize: number;
}): Promise<{ repo: string; dispose: () => Promise<void> }> {
  const repo = await mkdtemp(path.join(tmpdir(), "inferline-bench-heavy-"));
  const manifest = JSON.parse(
    await readFile(path.join(ROOT, "models", "spam-mlp", "1", "manifest.json"), "utf8"),
  ) as Record<string, unknown>;
  const dir = path.join(repo, opts.name, "1");
  await mkdir(dir, { recursive: true });
  await writeFile(
    path.join(dir, "model.onnx"),
    exportMlp(Mlp.init([...opts.layers], "softmax-cross-entropy", 1)),
  );
  await writeFile(
    path.join(dir, "manifest.json"),
    JSON.stringify({
      ...manifest,
      name: opts.name,
      description: `stand-in network ${opts.layers.join("→")}, maxBatchSize ${opts.maxBatchSize}`,
      batching: { maxBatchSize: opts.maxBatchSize, maxDelayMs: 0 },
      cache: { ttlSeconds: 0 },
      training: undefined,
    }),
  );
  return { repo, dispose: () => rm(repo, { recursive: true, force: true }) };
}

/** Parameters of a dense network with these layer sizes. */
export function parameterCount(layers: readonly number[]): number {
  let n = 0;
  for (let i = 1; i < layers.length; i++) n += layers[i - 1]! * layers[i]! + layers[i]!;
  return n;
}
