import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The built CLI (npm test builds before running tests). */
export const CLI = path.join(ROOT, "dist", "cli", "index.js");

export interface Spawned {
  readonly proc: ChildProcess;
  /** Every stdout line parsed as JSON (log lines), plus raw stderr text. */
  readonly lines: Record<string, unknown>[];
  /** The stdout lines that are not JSON (text that is no log line, or a log line broken up). */
  readonly unparsed: string[];
  /** Everything written to stdout so far, as written. */
  readonly stdout: () => string;
  readonly stderr: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line matching `pred`, rejects after `ms`. */
  waitForLine(pred: (l: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Spawns `inferline <args>` as a real process with the given environment (plus PATH).
 * `detached`: the process leads a process group of its own, as a command run from a terminal
 * does (`process.kill(-pid, signal)` then signals the group, like Ctrl-C).
 */
export function spawnCli(
  args: readonly string[],
  env: Record<string, string>,
  /** `node`: what node runs before `args` (default: the built CLI). */
  opts: { detached?: boolean; node?: readonly string[] } = {},
): Spawned {
  const proc = spawn(process.execPath, [...(opts.node ?? [CLI]), ...args], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: opts.detached ?? false,
  });
  const lines: Record<string, unknown>[] = [];
  const unparsed: string[] = [];
  const listeners = new Set<(l: Record<string, unknown>) => void>();
  let buf = "";
  let out = "";
  let err = "";
  proc.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk;
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        lines.push(parsed);
        for (const l of listeners) l(parsed);
      } catch {
        if (line) unparsed.push(line);
      }
    }
  });
  proc.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
  // "exit" can come before the last output has been read: resolved once the pipes are read to
  // their end ("close"), or 2 s after the exit when a grandchild still holds them open.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once("exit", (code, signal) => {
      const done = () => resolve({ code, signal });
      proc.once("close", done);
      setTimeout(done, 2000).unref();
    }),
  );
  return {
    proc,
    lines,
    unparsed,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForLine(pred, ms = 20_000) {
      const found = lines.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no matching log line within ${ms} ms; stderr: ${err.slice(-2000)}`));
        }, ms);
        const check = (l: Record<string, unknown>) => {
          if (!pred(l)) return;
          clearTimeout(timer);
          listeners.delete(check);
          resolve(l);
        };
        listeners.add(check);
        void exited.then(({ code, signal }) => {
          if (!listeners.has(check)) return;
          clearTimeout(timer);
          listeners.delete(check);
          reject(
            new Error(
              `process exited (${signal ?? code}) before a matching line; stderr: ${err.slice(-2000)}`,
            ),
          );
        });
      });
    },
    kill(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    },
  };
}

/** Starts a worker process and resolves once it is taking jobs; stops it if it never gets there. */
export async function spawnWorker(
  env: Record<string, string>,
  args: readonly string[] = [],
): Promise<Spawned> {
  const w = spawnCli(["worker", ...args], { ...env, LOG_LEVEL: "info" });
  try {
    await w.waitForLine((l) => l.event === "worker_started", 30_000);
  } catch (err) {
    // Nobody gets a handle on a worker that did not start: stop it here, or it outlives the test.
    await stop(w);
    throw err;
  }
  return w;
}

/** Stops a spawned process (SIGTERM, then SIGKILL after `ms`). */
export async function stop(p: Spawned, ms = 15_000): Promise<void> {
  p.kill("SIGTERM");
  const t = setTimeout(() => p.kill("SIGKILL"), ms);
  await p.exited;
  clearTimeout(t);
}

/** Whether process `pid` still runs. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
