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

/**
 * A worker recycling itself (WORKER_MAX_JOBS, its RSS limit, stuck threads), sent before it
 * closes: how many jobs it took. A worker that did real work is replaced at once however soon
 * it ends; only one that did none is suspected of a restart loop.
 */
export interface RecyclingMessage {
  readonly type: "recycling";
  readonly jobs: number;
  readonly reason: string;
}

export function isRecyclingMessage(m: unknown): m is RecyclingMessage {
  if (typeof m !== "object" || m === null) return false;
  const { type, jobs, reason } = m as { type?: unknown; jobs?: unknown; reason?: unknown };
  return type === "recycling" && typeof jobs === "number" && typeof reason === "string";
}

/**
 * Sent from a child's first line, once it holds SIGTERM, SIGINT and SIGHUP (cli/early-signals.ts):
 * from then on a stop signal is handled, so a child ended by the default action of the
 * supervisor's SIGTERM had not got that far (it had started nothing).
 */
export interface SignalsHeldMessage {
  readonly type: "signals_held";
}

export function isSignalsHeldMessage(m: unknown): m is SignalsHeldMessage {
  return typeof m === "object" && m !== null && (m as { type?: unknown }).type === "signals_held";
}
