import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError } from "commander";
import { releaseEarlySignals } from "./early-signals.js";
import { apiLogger, startApi } from "../api/main.js";
import { ConfigError, ENV_SCHEMA, KEY_NAME, loadConfig, PACKAGE_ROOT, type Config } from "../config/index.js";
import type { RecyclingMessage } from "../contracts/child-messages.js";
import { configEntry, generateKey } from "../security/keys.js";
import { VERSION_FORMAT } from "../models/manifest.js";
import { StartCancelledError } from "../redis/preflight.js";
import { RedisNotAvailableError } from "../supervisor/local-redis.js";
import { runStart, StartError } from "../supervisor/start.js";
import { createLogger } from "../telemetry/logger.js";
import { workerExit } from "../worker/exit.js";
import { startWorker, type WorkerHandle } from "../worker/main.js";

/** A whole-number option that stands in for a variable, within that variable's bounds. */
const intLike = (variable: "WORKERS" | "PORT" | "WORKER_CONCURRENCY") => {
  const schema = ENV_SCHEMA[variable].unwrap();
  const min = schema.minValue ?? 0;
  const max = schema.maxValue ?? Number.MAX_SAFE_INTEGER;
  return (v: string) => {
    const n = Number(v);
    if (!/^\s*\d+\s*$/.test(v) || n < min || n > max)
      throw new InvalidArgumentError(`must be a whole number from ${min} to ${max} (as ${variable})`);
    return n;
  };
};
const modelList = (v: string) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

function config(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`inferline: ${err.message}\nSee env.example for every variable.\n`);
      process.exit(2);
    }
    throw err;
  }
}

/**
 * Runs `close` on SIGTERM/SIGINT/SIGHUP (once), then exits 0; a second signal runs `force`
 * (if any) and exits 130 at once. A child of `inferline start` (it has an IPC channel) also
 * closes when the channel goes, that is when the supervisor is gone (kill -9, crash), so no API
 * or worker outlives it.
 */
function onSignals(
  close: () => Promise<void>,
  logger: { info: (o: object, m: string) => void },
  opts: { exit?: (code: number) => void; force?: () => void } = {},
): void {
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  let count = 0;
  const handler = (signal: NodeJS.Signals | "disconnect") => {
    // The channel also goes when a supervisor that asked us to stop exits: not a second signal.
    if (signal === "disconnect" && count > 0) return;
    if (++count > 1) {
      logger.info({ event: "signal", signal, forced: true }, `second ${signal}: stopping now`);
      opts.force?.();
      exit(130);
      return;
    }
    const why = signal === "disconnect" ? "supervisor gone" : signal;
    logger.info({ event: "signal", signal }, `${why}: shutting down`);
    close().then(
      () => exit(0),
      () => exit(1),
    );
  };
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
  process.on("SIGHUP", handler);
  if (process.send) process.on("disconnect", () => handler("disconnect"));
  // A signal that came while the modules loaded is handled now.
  releaseEarlySignals();
}

/**
 * A close for `onSignals` installed before start-up ends: it waits for the start-up in progress,
 * then closes what it started (a start-up that failed has nothing to close).
 */
function closeOnceStarted(starting: Promise<{ close(): Promise<void> }>): () => Promise<void> {
  return async () => {
    const handle = await starting.catch(() => undefined);
    await handle?.close();
  };
}

function fail(err: unknown): never {
  process.stderr.write(`inferline: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

const { version } = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as {
  version: string;
};

const program = new Command()
  .name("inferline")
  .description("Machine-learning models behind an HTTP API that never blocks.")
  .version(version, "-V, --version", "print the version")
  .showHelpAfterError()
  .addHelpText(
    "after",
    [
      "",
      "Configuration comes from environment variables (and .env outside production); env.example",
      "lists every one with its default. Command options override the variable they name.",
      "",
      "Exit status: 0 done or stopped cleanly; 1 failed (the reason is on stderr), bad usage, or a",
      "stop that had to kill a process (start: a child that did not finish within its timeout);",
      "2 invalid configuration (each bad variable is named); 130 stopped at once by a second signal.",
    ].join("\n"),
  );

program
  .command("start")
  .description("Run everything on one box: Redis (found or started), the API and worker processes.")
  .option("-w, --workers <n>", "worker processes (default: WORKERS)", intLike("WORKERS"))
  .action(async (opts: { workers?: number }) => {
    const cfg = config();
    const logger = createLogger(cfg, { role: "supervisor" });
    const handle = runStart(cfg, logger, {
      // The children run the same entry, holding early signals too.
      entry: fileURLToPath(import.meta.url).replace(/commands\.([jt]s)$/, "index.$1"),
      env: process.env,
      workers: opts.workers ?? cfg.WORKERS,
      print: (l) => process.stderr.write(`${l}\n`),
    });
    // Before anything is launched: a signal during start stops what start has launched so far;
    // a second one stops every process it launched at once, its own redis-server included.
    onSignals(() => handle.stop(), logger, { force: () => handle.kill() });
    void handle.failed.then(fail);
    await handle.ready.catch((err: unknown) => {
      // `ready` rejects only after everything launched is stopped again.
      if (!(err instanceof StartError || err instanceof RedisNotAvailableError))
        logger.error({ event: "start_failed", err }, "start failed");
      fail(err);
    });
  });

program
  .command("api")
  .description("Run one API process (stateless; run as many as you like behind a load balancer).")
  .option("-p, --port <port>", "port (default: PORT)", intLike("PORT"))
  .action(async (opts: { port?: number }) => {
    const cfg = config();
    const effective = opts.port === undefined ? cfg : Object.freeze({ ...cfg, PORT: opts.port });
    const logger = apiLogger(effective);
    const starting = startApi(effective, logger);
    onSignals(closeOnceStarted(starting), logger);
    const handle = await starting.catch(fail);
    process.send?.({ type: "listening", url: handle.url });
  });

program
  .command("worker")
  .description("Run one worker process: takes jobs, runs the models, stores results.")
  .option("-m, --models <list>", "comma-separated models (default: MODELS, or all)", modelList)
  .option(
    "-c, --concurrency <n>",
    "jobs held at once per model (default: WORKER_CONCURRENCY)",
    intLike("WORKER_CONCURRENCY"),
  )
  .action(async (opts: { models?: string[]; concurrency?: number }) => {
    const cfg = config();
    const logger = createLogger(cfg, { role: "worker" });
    // A signal while the start still waits for Redis cancels it (nothing to finish yet).
    const cancel = new AbortController();
    const starting = startWorker(
      cfg,
      { models: opts.models, concurrency: opts.concurrency, signal: cancel.signal },
      logger,
    );
    let started: WorkerHandle | undefined;
    const exit = workerExit({ logger, lingeringThreads: () => started?.lingeringThreads() ?? 0 });
    // Installed first: a SIGTERM while the worker starts stops it cleanly once it has started.
    const close = closeOnceStarted(starting);
    onSignals(
      () => {
        cancel.abort();
        return close();
      },
      logger,
      { exit },
    );
    // A cancelled start is the signal handler's to end (exit 0), not a failure.
    const handle = (started = await starting.catch((err: unknown) =>
      err instanceof StartCancelledError ? new Promise<never>(() => {}) : fail(err),
    ));
    void handle.recycled.then(async ({ reason, jobs }) => {
      logger.info({ event: "worker_recycling", reason, jobs }, `recycling: ${reason}`);
      // Under `inferline start`: a recycle after work is replaced at once, not backed off.
      const message: RecyclingMessage = { type: "recycling", jobs, reason };
      if (process.connected) process.send?.(message);
      await handle.close();
      exit(0);
    });
  });

const keys = program.command("keys").description("API keys (the server keeps only their SHA-256 hashes).");
keys
  .command("create")
  .description("Print a new random key and the API_KEYS entry that enables it.")
  .option(
    "-s, --scope <scope>",
    "predict (call models, read results) or admin (also admin routes, dashboard)",
    "predict",
  )
  .option("-n, --name <name>", "a label for logs and rate limits (letters, digits, _ . -)")
  .action((opts: { scope: string; name?: string }) => {
    if (opts.scope !== "predict" && opts.scope !== "admin")
      fail(new Error("--scope must be predict or admin"));
    const name = opts.name ?? `${opts.scope}-${new Date().toISOString().slice(0, 10)}`;
    if (!KEY_NAME.test(name)) fail(new Error("--name: 1 to 64 letters, digits, _ . -"));
    const key = generateKey();
    process.stdout.write(
      [
        `key        ${key}`,
        `scope      ${opts.scope}`,
        `API_KEYS   ${configEntry(key, opts.scope, name)}`,
        "",
        "Add the API_KEYS entry to the server's API_KEYS (entries separated by commas) or as a line",
        "of API_KEYS_FILE. The key itself is shown only now; clients send it as",
        `  Authorization: Bearer ${key}`,
        "",
      ].join("\n"),
    );
  });

program
  .command("train")
  .description("Train built-in models from the datasets npm ships (development install), or re-check them.")
  .argument("[names...]", "models to train (default: all built-in models)")
  .option("-r, --repository <dir>", "model repository to write into (default: MODEL_REPOSITORY)")
  .option("--evaluate", "re-evaluate the committed models on their held-out splits instead of training")
  .option(
    "--model-version <n>",
    "version folder to write (or re-check): a new one is served by a reload, an existing one only after the workers restart",
    (v: string) => {
      if (!VERSION_FORMAT.test(v))
        throw new InvalidArgumentError('must be a positive integer without leading zeros, e.g. "2"');
      return v;
    },
    "1",
  )
  .action(
    async (names: string[], opts: { repository?: string; evaluate?: boolean; modelVersion: string }) => {
      // Loaded on demand: training needs the dataset packages, which production installs lack.
      const { trainCommand } = await import("../training/command.js").catch((err: Error) =>
        fail(new Error(`training needs the development dependencies (npm install): ${err.message}`)),
      );
      const ok = await trainCommand(names, {
        repository: opts.repository ?? config().MODEL_REPOSITORY,
        evaluate: opts.evaluate ?? false,
        version: opts.modelVersion,
        print: (l) => process.stdout.write(`${l}\n`),
        printError: (l) => process.stderr.write(`inferline: ${l}\n`),
      }).catch(fail);
      process.exitCode = ok ? 0 : 1;
    },
  );

process.on("unhandledRejection", (err) => {
  process.stderr.write(`inferline: unhandled rejection: ${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});

await program.parseAsync(process.argv);
