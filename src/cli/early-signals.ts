import type { SignalsHeldMessage } from "../contracts/child-messages.js";

/**
 * The commands that run until stopped load their modules (ONNX Runtime, BullMQ, Fastify) for up
 * to a second or more before their own signal handlers exist. A SIGTERM in that time (a
 * supervisor, a service manager or Ctrl-C stopping what it has just started) would end the
 * process by the default action, as if killed in the middle of its work. Held here from the
 * first line instead, a signal is handed to the command's handlers once they exist; a second
 * one, before that, stops the process at once as it would later (130).
 */
const HELD = ["SIGTERM", "SIGINT", "SIGHUP"] as const;
const pending: NodeJS.Signals[] = [];

const hold = (signal: NodeJS.Signals) => {
  pending.push(signal);
  if (pending.length > 1) process.exit(130);
};

/** Holds signals from now on, for `command` if it is one that runs until stopped. */
export function holdEarlySignals(command: string | undefined): void {
  if (command !== "start" && command !== "api" && command !== "worker") return;
  for (const signal of HELD) process.on(signal, hold);
  // Under `inferline start`: its stop is handled from now on.
  const held: SignalsHeldMessage = { type: "signals_held" };
  process.send?.(held);
}

/** Called once the command's own handlers are installed: they receive what was held. */
export function releaseEarlySignals(): void {
  for (const signal of HELD) process.off(signal, hold);
  for (const signal of pending.splice(0)) process.kill(process.pid, signal);
}
