import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Worker } from "node:worker_threads";
import { InferenceTimeoutError, JobError } from "../../src/errors/catalog.js";
import { readDescriptor } from "../../src/models/catalog.js";
import { onnxRuntime, type SessionEvent } from "../../src/models/onnx/runtime.js";
import { SessionHost, lingeringSessionThreads } from "../../src/models/onnx/session-host.js";
import type { LoadedModel, ModelDescriptor } from "../../src/models/types.js";
import { Batcher } from "../../src/worker/batcher.js";
import { writeSpinModel } from "../support/spin-model.js";

/** The thread a session host runs on (private: reached only to kill it, as a crash would). */
function threadOf(value: unknown): Worker {
  const host = Reflect.get(value as object, "session") as SessionHost;
  return Reflect.get(host, "worker") as Worker;
}

/** Resolves with the first event of `type` recorded from now on (or already recorded). */
function eventOf(events: SessionEvent[], type: SessionEvent["type"], ms = 30_000): Promise<SessionEvent> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = setInterval(() => {
      const e = events.find((x) => x.type === type);
      if (e) {
        clearInterval(poll);
        resolve(e);
      } else if (Date.now() - started > ms) {
        clearInterval(poll);
        reject(new Error(`no ${type} event in ${ms} ms; got ${JSON.stringify(events)}`));
      }
    }, 20);
  });
}

const spin = (x: number) => ({ input: { spin: [x] }, attempt: 1 });

void describe("ONNX sessions that hang or die are replaced", () => {
  let repo: string;
  let descriptor: ModelDescriptor;

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-spin-"));
    descriptor = await readDescriptor(await writeSpinModel(repo), "spin", "1");
  });
  after(async () => {
    await rm(repo, { recursive: true, force: true });
  });

  function load(timeoutMs: number) {
    const events: SessionEvent[] = [];
    const runtime = onnxRuntime({
      intraOpThreads: 1,
      interOpThreads: 1,
      inferenceTimeoutMs: timeoutMs,
      onSessionEvent: (e) => events.push(e),
    });
    return { events, model: runtime.load(descriptor) };
  }

  void it("times a hung batch out with a retryable inference_timeout, then runs on one fresh session", async () => {
    const { events, model: loading } = load(300);
    const model = await loading;
    try {
      assert.deepEqual(await model.predictBatch([spin(0)]), [{ value: 0 }]);
      // About 10^7 loop iterations inside ONNX Runtime: seconds, far past the 300 ms, and long
      // enough to outlast the 2 s after which an abandoned thread is reported stuck (3 × 10^6
      // ended sooner than that on a fast core).
      const t0 = performance.now();
      const err = await model.predictBatch([spin(10), spin(0)]).then(
        () => assert.fail("a batch running past its timeout succeeded"),
        (e: unknown) => e,
      );
      const waited = performance.now() - t0;
      assert.ok(err instanceof InferenceTimeoutError, String(err));
      assert.equal(err.code, "inference_timeout");
      assert.equal(err.retryable, true);
      // Long before the run itself would have ended (seconds), with room for a loaded machine.
      assert.ok(waited < 4000, `the timeout fired after ${Math.round(waited)} ms`);
      assert.deepEqual(
        events.map((e) => e.type),
        ["timeout"],
      );
      // Two batches at once after the death: both run, on a single replacement.
      const [a, b] = await Promise.all([
        model.predictBatch([spin(0)]),
        model.predictBatch([spin(0), spin(0.000001)]),
      ]);
      assert.deepEqual(a, [{ value: 0 }]);
      assert.equal(b.length, 2);
      const restarts = events.filter((e) => e.type === "restarted");
      assert.equal(restarts.length, 1, JSON.stringify(events));
      assert.equal((restarts[0] as { reason: string }).reason, "timeout");
      // The abandoned thread cannot be interrupted inside ONNX Runtime: it is reported stuck,
      // then gone once its run returns and it has released its session.
      assert.equal((await eventOf(events, "stuck")).type, "stuck");
      // (Seconds on an idle core; far more on a busy machine.)
      await eventOf(events, "unstuck", 150_000);
      assert.equal(lingeringSessionThreads(), 0);
    } finally {
      await model.close();
    }
  });

  void it("a version unloaded under its jobs finishes the batch in flight and hands the rest back", async () => {
    const { model: loading } = load(30_000);
    const model = await loading;
    const batcher = new Batcher(model);
    // About 0.1 s of inference, then two jobs waiting behind it in the batcher.
    const running = batcher.submit(spin(2 ** -5));
    await sleep(20);
    const waiting = Promise.allSettled([batcher.submit(spin(0)), batcher.submit(spin(0))]);
    // What a reload does once the version's folder is gone (ModelPool.unloadMissing).
    await model.close();
    assert.deepEqual((await running).output, { value: 2 ** -5 });
    // Retried as version_not_found, like a job reaching a worker that no longer serves the
    // version (not inference_failed: nothing is wrong with the model or the input).
    for (const outcome of await waiting) {
      assert.equal(outcome.status, "rejected");
      assert.ok(outcome.reason instanceof JobError, String(outcome.reason));
      assert.equal(outcome.reason.code, "version_not_found");
      assert.equal(outcome.reason.retryable, true);
    }
  });

  void it("replaces a session whose thread exited: later batches run on one new thread", async () => {
    const { events, model: loading } = load(30_000);
    const model = await loading;
    try {
      const first = threadOf(model);
      // Killed while idle, as a crash in the thread would end it. (Not in the middle of a run:
      // onnxruntime-node aborts the process when a run returns into a terminated thread.)
      await first.terminate();
      assert.equal((await eventOf(events, "exited")).type, "exited");
      const [a, b] = await Promise.all([model.predictBatch([spin(0)]), model.predictBatch([spin(0)])]);
      assert.deepEqual([a, b], [[{ value: 0 }], [{ value: 0 }]]);
      assert.deepEqual(await model.predictBatch([spin(2 ** -20)]), [{ value: 2 ** -20 }]);
      const second = threadOf(model);
      assert.notEqual(second, first);
      const restarts = events.filter((e) => e.type === "restarted");
      assert.equal(restarts.length, 1, JSON.stringify(events));
      assert.equal((restarts[0] as { reason: string }).reason, "exited");
    } finally {
      await model.close();
    }
  });

  void it("a session host whose thread exits refuses runs and says so", async () => {
    const exits: number[] = [];
    const host = await SessionHost.start(
      { file: path.join(descriptor.dir, "spin.onnx"), options: {} },
      { onExit: (code) => exits.push(code) },
    );
    await (Reflect.get(host, "worker") as Worker).terminate();
    await new Promise((r) => setImmediate(r));
    assert.equal(host.alive, false);
    assert.deepEqual(exits, [1]);
    await assert.rejects(host.run("x", "y", new Float32Array([0]), [1, 1]), /ONNX Runtime thread exited/);
    await host.release();
  });

  void it("a released session host finishes the run in flight, then its thread exits", async () => {
    const exits: number[] = [];
    const host = await SessionHost.start(
      { file: path.join(descriptor.dir, "spin.onnx"), options: {} },
      { onExit: (code) => exits.push(code) },
    );
    const inFlight = host.run("x", "y", new Float32Array([0.25]), [1, 1]);
    await host.release();
    assert.deepEqual([...(await inFlight).data], [0.25]);
    assert.equal(host.alive, false);
    await assert.rejects(host.run("x", "y", new Float32Array([0]), [1, 1]), /released/);
    assert.equal(lingeringSessionThreads(), 0, "the thread exited");
    assert.deepEqual(exits, [], "an exit it was asked for is not reported as a crash");
  });
});

void describe("batcher and timeouts", () => {
  void it("fails every job of a timed-out batch at once instead of re-running them one by one", async () => {
    const calls: number[] = [];
    const model: LoadedModel = {
      descriptor: {
        name: "m",
        version: "1",
        batching: { maxBatchSize: 4, maxDelayMs: 0 },
      } as ModelDescriptor,
      async predictBatch(items) {
        calls.push(items.length);
        throw new InferenceTimeoutError("too slow");
      },
      async close() {},
    };
    const batcher = new Batcher(model);
    const outcomes = await Promise.allSettled([1, 2, 3].map((n) => batcher.submit({ input: n, attempt: 1 })));
    assert.deepEqual(calls, [3]);
    for (const o of outcomes) {
      assert.equal(o.status, "rejected");
      assert.ok(o.reason instanceof InferenceTimeoutError);
    }
  });
});
