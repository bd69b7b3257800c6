import type { SessionEvent } from "../models/onnx/runtime.js";
import type { Logger } from "../telemetry/logger.js";
import type { WorkerTelemetry } from "../telemetry/telemetry.js";

/** Logs and counts what happens to ONNX Runtime session threads. */
export function reportSessionEvent(e: SessionEvent, logger: Logger, telemetry: WorkerTelemetry): void {
  const { model, version } = e;
  switch (e.type) {
    case "timeout":
      telemetry.inferenceTimeout(model, version);
      logger.warn(
        { event: "inference_timeout", model, version, timeout_ms: e.timeoutMs, batch_size: e.rows },
        `${model}@${version}: an inference batch ran longer than ${e.timeoutMs} ms; replacing its session`,
      );
      return;
    case "exited":
      logger.warn(
        { event: "onnx_thread_exited", model, version, code: e.code },
        `${model}@${version}: its ONNX Runtime thread exited (${e.code}); replacing its session`,
      );
      return;
    case "restarted":
      telemetry.sessionRestarted(model, version, e.reason);
      logger.info(
        { event: "onnx_session_restarted", model, version, reason: e.reason, duration_ms: e.ms },
        `${model}@${version}: fresh ONNX Runtime session ready`,
      );
      return;
    case "restart_failed":
      logger.error(
        { event: "onnx_session_restart_failed", model, version, err: e.error },
        `${model}@${version}: the ONNX Runtime session could not restart (the next batch tries again)`,
      );
      return;
    case "stuck":
      telemetry.stuckThreads(e.stuck);
      logger.error(
        { event: "onnx_thread_stuck", model, version, stuck_threads: e.stuck },
        `${model}@${version}: an abandoned ONNX Runtime thread is still running and cannot be interrupted; it holds a core until its run returns (restart this worker to reclaim it)`,
      );
      return;
    case "unstuck":
      telemetry.stuckThreads(e.stuck);
      logger.info(
        { event: "onnx_thread_unstuck", model, version, stuck_threads: e.stuck },
        `${model}@${version}: an abandoned ONNX Runtime thread finished its run and exited`,
      );
      return;
  }
}
