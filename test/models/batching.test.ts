import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { recipe } from "../../src/training/recipes.js";
import { datasetSplit } from "../../src/training/train.js";
import { testEnv } from "../support/config.js";
import { call } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import { closeTo, ONNX_MODELS, referenceModel } from "./reference.js";

const SERVED = [...ONNX_MODELS, "echo"];

void describe("dynamic batching under load", () => {
  // The test starts these once the queues are full; registered before useInferline's hooks, this
  // `after` stops them before the API closes.
  const workers: Spawned[] = [];
  after(async () => {
    await Promise.all(workers.map((w) => stop(w)));
  });
  const inferline = useInferline("onnx-batch", { env: { MODELS: SERVED.join(",") } });

  void it("1,000 concurrent mixed requests each get their own answer; a poison input fails alone; batches form", async () => {
    type Case = { model: string; input: Record<string, unknown>; expected: unknown; poison?: boolean };
    const cases: Case[] = [];
    const counts: Record<string, number> = { spam: 300, "spam-mlp": 250, penguins: 150, "cars-mpg": 150 };
    for (const name of ONNX_MODELS) {
      const ref = referenceModel(name);
      const { test } = await datasetSplit(recipe(name));
      for (let i = 0; i < counts[name]!; i++) {
        const input = test[i % test.length]!.input;
        cases.push({ model: name, input, expected: ref.predict(input) });
      }
    }
    for (let i = 0; i < 150; i++) {
      const poison = i % 50 === 7;
      const input = poison ? { text: `poison ${i}`, fail: "invalid" } : { text: `echo ${i}`, sleep_ms: 2 };
      cases.push({ model: "echo", input, expected: { echo: `echo ${i}` }, poison });
    }
    assert.equal(cases.length, 1000);
    // Interleave models so every queue fills at once.
    cases.sort((a, b) => hash(JSON.stringify(a.input)) - hash(JSON.stringify(b.input)));

    const accepted = await Promise.all(
      cases.map((c) => call(inferline.url, "POST", `/api/ml/${c.model}`, c.input)),
    );
    for (const r of accepted) assert.ok(r.status === 202 || r.status === 200, JSON.stringify(r.body));
    // Workers start on full queues, so batches form however fast the requests came in.
    for (let i = 0; i < 2; i++)
      workers.push(
        await spawnWorker(testEnv(inferline.prefix, { MODELS: SERVED.join(","), WORKER_CONCURRENCY: "32" })),
      );

    const results = await Promise.all(
      accepted.map(async (r) => {
        if (r.status === 200) return r.body;
        const g = await call(inferline.url, "GET", `/api/results/${String(r.body.job_id)}`, undefined, {
          prefer: "wait=60",
        });
        assert.equal(g.status, 200, JSON.stringify(g.body));
        return g.body;
      }),
    );

    const batchSizes: Record<string, number[]> = {};
    results.forEach((body, i) => {
      const c = cases[i]!;
      if (c.poison) {
        assert.equal(body.status, "failed", `poison input fails: ${JSON.stringify(body)}`);
        return;
      }
      assert.equal(body.status, "completed", `${c.model} #${i}: ${JSON.stringify(body).slice(0, 300)}`);
      const problem = closeTo(body.result, c.expected);
      assert.equal(problem, undefined, `${c.model} #${i} got another answer: ${problem}`);
      if (body.cached !== true && typeof body.batch_size === "number")
        (batchSizes[c.model] ??= []).push(body.batch_size);
    });
    const poisoned = cases.filter((c) => c.poison).length;
    assert.ok(poisoned >= 3);

    for (const name of ONNX_MODELS) {
      const sizes = batchSizes[name] ?? [];
      assert.ok(sizes.length > 0, `${name}: some results came from inference`);
      assert.ok(Math.max(...sizes) > 1, `${name}: batches larger than 1 formed (max ${Math.max(...sizes)})`);
    }
    // The echo neighbours of each poison input completed even though they shared its batch.
    assert.ok(Math.max(...(batchSizes.echo ?? [1])) > 1, "echo batches formed too");
  });
});

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
