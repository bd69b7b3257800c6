import { fork, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const CLI = path.join(ROOT, "dist", "cli", "index.js");

/** Runs `inferline <args>` (built CLI); resolves once a log line with `event` appears. */
export async function startCli(
  args: string[],
  env: Record<string, string>,
  readyEvent: string,
): Promise<ChildProcess> {
  return (await startCliLine(args, env, readyEvent)).proc;
}

/**
 * `inferline api` on a free port (PORT=0): resolves with the process and the URL it logged, so
 * scenarios never collide with each other or with anything else listening on the machine.
 */
export async function startApiProcess(
  env: Record<string, string>,
): Promise<{ proc: ChildProcess; url: string }> {
  const { proc, line } = await startCliLine(["api"], { ...env, PORT: "0" }, "api_started");
  const url = (JSON.parse(line) as { url?: string }).url;
  if (!url) {
    await stopChild(proc);
    throw new Error(`api_started without a url: ${line}`);
  }
  return { proc, url };
}

/** An Inferline under benchmark: one API process on a free port and one worker process. */
export interface Stack {
  readonly api: ChildProcess;
  readonly worker: ChildProcess;
  /** The API's base URL. */
  readonly url: string;
  /** Stops the worker (it drains), then the API. */
  stop(): Promise<void>;
}

/** Starts `inferline api` and `inferline worker <workerArgs>` on `env`; nothing is left running if either fails. */
export async function startStack(env: Record<string, string>, workerArgs: string[] = []): Promise<Stack> {
  const { proc: api, url } = await startApiProcess(env);
  const worker = await startCli(["worker", ...workerArgs], env, "worker_started").catch(async (e) => {
    await stopChild(api);
    throw e;
  });
  return {
    api,
    worker,
    url,
    stop: async () => {
      await stopChild(worker);
      await stopChild(api);
    },
  };
}

/**
 * Runs the built CLI with its log lines going to a file (see logFile), not to a pipe: reading a
 * pipe would charge the benchmark process, which stands for the clients, for every log line the
 * processes under test write. Resolves once a line with `event` has been written.
 */
function startCliLine(
  args: string[],
  env: Record<string, string>,
  readyEvent: string,
): Promise<{ proc: ChildProcess; line: string }> {
  const file = logFile(args[0] ?? "cli");
  const out = openSync(file, "a");
  const p = spawn(process.execPath, [...benchNodeArgs(), CLI, ...args], {
    env: { ...process.env, LOG_LEVEL: "info", NODE_ENV: "production", ...env },
    stdio: ["ignore", out, "inherit"],
  });
  closeSync(out);
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => {
      clearInterval(poll);
      const tail = readFileSync(file, "utf8").slice(-2000);
      reject(new Error(`inferline ${args.join(" ")} exited ${code}; its last log lines:\n${tail}`));
    };
    const poll = setInterval(() => {
      const line = readFileSync(file, "utf8")
        .split("\n")
        .find((l) => l.includes(`"event":"${readyEvent}"`));
      if (line === undefined) return;
      clearInterval(poll);
      p.off("exit", onExit);
      resolve({ proc: p, line });
    }, 20);
    p.once("exit", onExit);
  });
}

let logDir: string | undefined;

/** A fresh file for one process's log lines, in a folder of this run's, removed at exit. */
function logFile(name: string): string {
  if (logDir === undefined) {
    const dir = mkdtempSync(path.join(tmpdir(), "inferline-bench-"));
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    logDir = dir;
  }
  return path.join(logDir, `${name}-${randomBytes(3).toString("hex")}.log`);
}

/** BENCH_NODE_ARGS: Node options for every process under test (e.g. --cpu-prof). */
function benchNodeArgs(): string[] {
  return process.env.BENCH_NODE_ARGS?.split(" ").filter(Boolean) ?? [];
}

/** A baseline worker (bench/support/baseline-workers.ts) in its own process. */
export async function startBaseline(
  mode: "bare" | "list",
  redisUrl: string,
  prefix: string,
  concurrency: number,
) {
  return (await forkBaseline([mode, redisUrl, prefix, String(concurrency)])).proc;
}

/** Bare BullMQ behind a minimal HTTP route (baseline-workers.ts "http") on a free port. */
export async function startHttpBaseline(redisUrl: string, prefix: string) {
  const { proc, message } = await forkBaseline(["http", redisUrl, prefix, "0"]);
  return { proc, url: `http://127.0.0.1:${Number(message)}` };
}

function forkBaseline(args: string[]) {
  return new Promise<{ proc: ChildProcess; message: unknown }>((resolve, reject) => {
    const p = fork(path.join(ROOT, "bench", "support", "baseline-workers.ts"), args, {
      execArgv: ["--import", "tsx", ...benchNodeArgs()],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    p.once("message", (message) => resolve({ proc: p, message }));
    p.once("exit", (code) => reject(new Error(`baseline ${args[0]} exited ${code}`)));
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

/**
 * The environment of an Inferline under benchmark: its own key prefix, loopback, no API keys or
 * rate limits (they would throttle the load) and a queue cap no run reaches; `extra` adds or
 * overrides variables.
 */
export function benchEnv(
  redisUrl: string,
  prefix: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: prefix,
    HOST: "127.0.0.1",
    AUTH_DISABLED: "true",
    RATE_LIMIT_IP_RPS: "0",
    RATE_LIMIT_KEY_RPS: "0",
    QUEUE_MAX_DEPTH: "1000000",
    ...extra,
  };
}
