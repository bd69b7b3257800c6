import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { call } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { stop } from "../support/processes.js";
import { writeSpinModel } from "../support/spin-model.js";
import { predict } from "./reference.js";

/** Inferline with one worker serving the spin model, inferences timed out after 400 ms. */
function servingSpin(label: string, env: Record<string, string>) {
  const repo = mkdtempSync(path.join(tmpdir(), `inferline-${label}-`));
  before(async () => {
    await writeSpinModel(repo);
  });
  const inferline = useInferline(label, {
    env: { MODEL_REPOSITORY: repo, INFERENCE_TIMEOUT_MS: "400", ...env },
    worker: true,
  });
  after(() => rmSync(repo, { recursive: true, force: true }));
  return inferline;
}

/**
 * A real ONNX model whose inference never ends (an ONNX Loop of 10^12 iterations, inside ONNX
 * Runtime's native code), served by a real worker process with a short inference timeout.
 */
void describe("an ONNX inference that hangs", () => {
  const inferline = servingSpin("onnx-hang", {
    JOB_ATTEMPTS: "2",
    JOB_BACKOFF_MS: "50",
    // Kept serving with its stuck threads, to show the replaced session and the SIGTERM path.
    WORKER_MAX_STUCK_THREADS: "0",
  });

  void it("fails its job with inference_timeout after every attempt; the worker then serves on a fresh session", async () => {
    const posted = await call(inferline.url, "POST", "/api/ml/spin", { spin: [1e6] });
    assert.equal(posted.status, 202, JSON.stringify(posted.body));
    const jobId = posted.body.job_id as string;
    const view = await call(inferline.url, "GET", `/api/results/${jobId}`, undefined, { prefer: "wait=30" });
    assert.equal(view.status, 200, JSON.stringify(view.body));
    assert.equal(view.body.status, "failed", JSON.stringify(view.body));
    assert.equal((view.body.error as { code: string }).code, "inference_timeout", JSON.stringify(view.body));
    assert.equal(view.body.attempts, 2, JSON.stringify(view.body));

    const worker = inferline.worker;
    // A worker marks a job failed before it writes that turn's log lines: wait for the last one.
    await worker.waitForLine((l) => l.event === "job_failed" && l.job_id === jobId, 5000);
    const timeouts = worker.lines.filter((l) => l.event === "inference_timeout");
    assert.equal(timeouts.length, 2, "one timeout per attempt");
    assert.deepEqual(
      worker.lines.filter((l) => l.event === "job_retrying" || l.event === "job_failed").map((l) => l.code),
      ["inference_timeout", "inference_timeout"],
    );

    // The same worker answers the next job, on a session that replaced the hung one.
    const ok = await predict(inferline.url, "spin", { spin: [0] });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.status, "completed", JSON.stringify(ok.body));
    assert.deepEqual(ok.body.result, { value: 0 });
    const restarted = worker.lines.filter((l) => l.event === "onnx_session_restarted");
    assert.ok(
      restarted.length >= 1 && restarted.every((l) => l.reason === "timeout"),
      JSON.stringify(restarted),
    );
    // Both hung threads are still inside ONNX Runtime, which nothing can interrupt: reported.
    await worker.waitForLine((l) => l.event === "onnx_thread_stuck" && l.stuck_threads === 2, 10_000);
  });

  void it("still stops on SIGTERM, killing itself rather than waiting for the hung threads", async () => {
    const worker = inferline.worker;
    const t0 = Date.now();
    await stop(worker, 30_000);
    const { signal } = await worker.exited;
    assert.ok(Date.now() - t0 < 20_000, `stopping took ${Date.now() - t0} ms`);
    assert.equal(signal, "SIGKILL");
    const killed = worker.lines.find((l) => l.event === "worker_killed_self");
    assert.ok(killed, "the worker says why it killed itself");
    assert.equal(killed.lingering_threads, 2);
    assert.ok(
      worker.lines.some((l) => l.event === "worker_stopped"),
      "it drained and closed first",
    );
  });
});

void describe("a worker holding a stuck ONNX Runtime thread (WORKER_MAX_STUCK_THREADS=1)", () => {
  const inferline = servingSpin("onnx-hang-recycle", { JOB_ATTEMPTS: "1", WORKER_MAX_STUCK_THREADS: "1" });

  void it("recycles itself, giving the core back: it drains, then ends by SIGKILL", async () => {
    const posted = await call(inferline.url, "POST", "/api/ml/spin", { spin: [1e6] }, { prefer: "wait=20" });
    assert.equal(posted.body.status, "failed", JSON.stringify(posted.body));
    assert.equal((posted.body.error as { code: string }).code, "inference_timeout");
    const worker = inferline.worker;
    const { signal } = await worker.exited;
    assert.equal(signal, "SIGKILL");
    const recycling = worker.lines.find((l) => l.event === "worker_recycling");
    assert.match(String(recycling?.reason), /1 ONNX Runtime thread\(s\) stuck/, JSON.stringify(recycling));
    assert.ok(
      worker.lines.some((l) => l.event === "worker_stopped"),
      "it drained and closed first",
    );
    const killed = worker.lines.find((l) => l.event === "worker_killed_self");
    assert.equal(killed?.lingering_threads, 1);
    assert.equal(killed?.code, 0, "the status it means, announced to a supervisor");
  });
});
