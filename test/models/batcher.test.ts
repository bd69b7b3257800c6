import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, it } from "node:test";
import type { LoadedModel, ModelDescriptor, PredictItem } from "../../src/models/types.js";
import { Batcher } from "../../src/worker/batcher.js";

/** A model that records when each batch starts and ends; `sleep_ms` in an input sets its cost. */
function recordingModel(maxBatchSize: number, maxDelayMs: number) {
  const batches: { inputs: unknown[]; start: number; end: number }[] = [];
  const model: LoadedModel = {
    descriptor: { name: "m", version: "1", batching: { maxBatchSize, maxDelayMs } } as ModelDescriptor,
    async predictBatch(items: readonly PredictItem[]) {
      const start = performance.now();
      const cost = Math.max(0, ...items.map((i) => (i.input as { sleep_ms?: number }).sleep_ms ?? 0));
      if (cost > 0) await sleep(cost);
      batches.push({ inputs: items.map((i) => i.input), start, end: performance.now() });
      return items.map((i) => i.input);
    },
    async close() {},
  };
  return { model, batches };
}

void describe("batcher", () => {
  void it("runs a batch as soon as it is full instead of waiting out maxDelayMs", async () => {
    const { model, batches } = recordingModel(4, 10_000);
    const batcher = new Batcher(model);
    const t0 = performance.now();
    const outcomes = await Promise.all([1, 2, 3, 4].map((n) => batcher.submit({ input: { n }, attempt: 1 })));
    assert.deepEqual(
      outcomes.map((o) => o.batchSize),
      [4, 4, 4, 4],
    );
    assert.equal(batches.length, 1);
    assert.ok(batches[0]!.start - t0 < 5_000, `a full batch waited ${Math.round(batches[0]!.start - t0)} ms`);
  });

  void it("does not make a job left over from the previous batch wait maxDelayMs again", async () => {
    const delay = 4_000;
    const { model, batches } = recordingModel(8, delay);
    const batcher = new Batcher(model);
    // The first job waits `delay` for company, then runs alone for longer than `delay`.
    const first = batcher.submit({ input: { n: 1, sleep_ms: delay + 500 }, attempt: 1 });
    await sleep(delay + 200);
    // Arrives while the model is busy: by the time it is idle, this job has waited `delay` already.
    const second = batcher.submit({ input: { n: 2 }, attempt: 1 });
    await Promise.all([first, second]);
    assert.equal(batches.length, 2);
    const idleFor = batches[1]!.start - batches[0]!.end;
    assert.ok(idleFor < delay / 2, `the model sat idle ${Math.round(idleFor)} ms with a job waiting`);
  });
});
