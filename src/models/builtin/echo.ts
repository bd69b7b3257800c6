import { setTimeout as sleep } from "node:timers/promises";
import { jobErrors } from "../../errors/catalog.js";
import type { LoadedModel, ModelDescriptor, PredictItem } from "../types.js";

interface EchoInput {
  text?: string;
  value?: unknown;
  sleep_ms?: number;
  fail?: "error" | "invalid";
  fail_attempts?: number;
}

/**
 * The diagnostics model: returns its input. It measures the service's own overhead, and its
 * optional knobs simulate inference time (`sleep_ms`, once per batch like a batched forward
 * pass) and faults (`fail`: a retryable error, for the first `fail_attempts` attempts or always;
 * or an input the worker rejects without retry) for tests and drills.
 */
export function echoModel(descriptor: ModelDescriptor): LoadedModel {
  return {
    descriptor,
    async predictBatch(items: readonly PredictItem[]) {
      const inputs = items.map((i) => i.input as EchoInput);
      const sleepMs = Math.max(0, ...inputs.map((i) => i.sleep_ms ?? 0));
      if (sleepMs > 0) await sleep(sleepMs);
      return items.map(({ input, attempt }) => {
        const i = input as EchoInput;
        if (i.fail === "invalid")
          throw jobErrors.invalidInput("fail: the diagnostics model was asked to reject this input");
        if (i.fail === "error" && (i.fail_attempts === undefined || attempt <= i.fail_attempts)) {
          throw jobErrors.inference(`fail: injected error on attempt ${attempt}`);
        }
        return { echo: i.text ?? i.value ?? null, attempt };
      });
    },
    async close() {},
  };
}
