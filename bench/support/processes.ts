import { fork, spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const CLI = path.join(ROOT, "dist", "cli", "index.js");

/** Runs `inferline <args>` (built CLI); resolves once a log line with `event` appears. */
export function startCli(
  args: string[],
  env: Record<string, string>,
  readyEvent: string,
): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, LOG_LEVEL: "info", NODE_ENV: "production", ...env },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let buf = "";
    const onData = (c: Buffer) => {
      buf += c.toString();
      if (buf.includes(`"event":"${readyEvent}"`)) {
        p.stdout.off("data", onData);
        p.stdout.resume();
        resolve(p);
      }
      if (buf.length > 1e6) buf = buf.slice(-1e5);
    };
    p.stdout.on("data", onData);
    p.once("exit", (code) => reject(new Error(`inferline ${args.join(" ")} exited ${code}`)));
  });
}

/** A baseline worker (bench/support/baseline-workers.ts) in its own process. */
export function startBaseline(mode: "bare" | "list", redisUrl: string, prefix: string, concurrency: number) {
  return new Promise<ChildProcess>((resolve, reject) => {
    const p = fork(
      path.join(ROOT, "bench", "support", "baseline-workers.ts"),
      [mode, redisUrl, prefix, String(concurrency)],
      {
        execArgv: ["--import", "tsx"],
        stdio: ["ignore", "inherit", "inherit", "ipc"],
      },
    );
    p.once("message", () => resolve(p));
    p.once("exit", (code) => reject(new Error(`baseline ${mode} exited ${code}`)));
  });
}

export async function stopChild(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once("exit", r));
  p.kill("SIGTERM");
  const t = setTimeout(() => p.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(t);
}
