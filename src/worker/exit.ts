import type { ExitingMessage } from "../contracts/child-messages.js";
import type { Logger } from "../telemetry/logger.js";

export interface WorkerExitDeps {
  readonly logger: Logger;
  /** ONNX Runtime threads let go inside an inference that has not returned. */
  readonly lingeringThreads: () => number;
  readonly exit?: (code: number) => void;
  readonly kill?: () => void;
  /** Tells the supervisor, when there is one; `done` once the message is out (or there is none). */
  readonly send?: (message: ExitingMessage, done: () => void) => void;
}

/**
 * How a worker process ends once everything is closed. An ONNX Runtime thread let go in the middle
 * of a hung (or long) inference cannot be stopped, and a normal exit, which terminates threads,
 * would abort the process when that run returns, or wait for it for ever. With such a thread the
 * process kills itself instead; it first tells its supervisor (`inferline start`) the status it
 * means, so a deliberate recycle is replaced at once rather than backed off like a crash.
 */
export function workerExit(deps: WorkerExitDeps): (code: number) => void {
  const exit = deps.exit ?? ((code: number) => process.exit(code));
  const kill = deps.kill ?? (() => process.kill(process.pid, "SIGKILL"));
  const send =
    deps.send ??
    ((m: ExitingMessage, done: () => void) => {
      if (!process.connected || !process.send) return done();
      process.send(m, undefined, {}, () => done());
    });
  return (code) => {
    const lingering = deps.lingeringThreads();
    if (lingering === 0) return exit(code);
    deps.logger.warn(
      { event: "worker_killed_self", lingering_threads: lingering, code },
      `${lingering} ONNX Runtime thread(s) still inside an inference; exiting by SIGKILL`,
    );
    // Killed once the log line is out and the supervisor has the message, or after 500 ms.
    let pending = 2;
    const ready = () => {
      if (--pending === 0) kill();
    };
    setTimeout(kill, 500);
    deps.logger.flush(ready);
    try {
      send({ type: "exiting", code }, ready);
    } catch {
      ready(); // the channel is gone with the supervisor: nobody to tell
    }
  };
}
