/** IPC messages a child of `inferline start` sends its supervisor. Imports nothing of ours. */

/**
 * The exit status a child means, sent just before it ends by SIGKILL (which carries no status):
 * a worker holding an ONNX Runtime thread it cannot stop recycles itself that way.
 */
export interface ExitingMessage {
  readonly type: "exiting";
  readonly code: number;
}

export function isExitingMessage(m: unknown): m is ExitingMessage {
  if (typeof m !== "object" || m === null) return false;
  const { type, code } = m as { type?: unknown; code?: unknown };
  return type === "exiting" && typeof code === "number";
}
