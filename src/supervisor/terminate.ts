import type { ChildProcess } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Stops a child process: SIGTERM, then SIGKILL if `done` has not resolved within `timeoutMs`,
 * and waits for `done` (its exit, or the close of its output). A child that has exited already
 * gets no signal; its `done` is waited for, within the same bound. The timer never keeps the
 * process alive by itself.
 */
export async function terminateChild(
  child: ChildProcess,
  done: Promise<unknown>,
  timeoutMs: number,
): Promise<void> {
  const timeout = sleep(timeoutMs, "timeout" as const, { ref: false });
  if (child.exitCode !== null || child.signalCode !== null) {
    await Promise.race([done, timeout]);
    return;
  }
  child.kill("SIGTERM");
  if ((await Promise.race([done.then(() => "done" as const), timeout])) === "timeout") {
    child.kill("SIGKILL");
    await done;
  }
}
