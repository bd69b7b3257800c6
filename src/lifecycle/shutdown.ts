import type { Logger } from "pino";

export interface Step {
  readonly name: string;
  readonly run: () => unknown;
  /** Longest this step may take before shutdown moves on (ms). */
  readonly timeoutMs?: number;
}

/**
 * Runs cleanup steps in order, each guarded: a step that throws or overruns its deadline is
 * logged and skipped, so one stuck resource (a connection to a Redis that is gone, say) never
 * keeps a process from exiting.
 */
export async function runSteps(
  steps: readonly Step[],
  logger: Logger,
  defaultTimeoutMs = 5000,
): Promise<void> {
  for (const step of steps) {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<"timeout">((r) => {
      timer = setTimeout(() => r("timeout"), step.timeoutMs ?? defaultTimeoutMs);
      timer.unref();
    });
    try {
      const outcome = await Promise.race([Promise.resolve(step.run()), deadline]);
      if (outcome === "timeout")
        logger.warn({ event: "shutdown_step_timeout", step: step.name }, `${step.name}: gave up waiting`);
    } catch (err) {
      logger.warn(
        { event: "shutdown_step_failed", step: step.name, err: (err as Error).message },
        `${step.name} failed`,
      );
    } finally {
      clearTimeout(timer);
    }
  }
}
