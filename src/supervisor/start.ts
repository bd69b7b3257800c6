import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer } from "node:net";
import { hostname } from "node:os";
import type { Redis } from "ioredis";
import type { Config } from "../config/index.js";
import { runSteps } from "../lifecycle/shutdown.js";
import type { ModelCatalog } from "../models/catalog.js";
import { loadServedCatalog, ModelRepositoryError } from "../models/served-catalog.js";
import { createRedis } from "../redis/connection.js";
import { configEntry, generateKey } from "../security/keys.js";
import type { Logger } from "../telemetry/logger.js";
import { WorkerRegistry } from "../telemetry/workers.js";
import { Autoscaler, type ScalePolicy } from "./autoscaler.js";
import { HangWatch } from "./hang-watch.js";
import { ensureRedis, type RedisHandle } from "./local-redis.js";
import { QueueProbe } from "./queue-probe.js";
import { Supervisor } from "./supervisor.js";
import { WorkerPool } from "./worker-pool.js";

export interface StartOptions {
  readonly entry: string;
  readonly env: NodeJS.ProcessEnv;
  readonly workers: number;
  /** Where the banner goes (stderr: stdout carries JSON logs). */
  readonly print: (line: string) => void;
}

export interface StartHandle {
  readonly url: Promise<string>;
  /**
   * Resolves once Redis, the API, the workers and the autoscaler are launched; rejects with a
   * one-line reason when `start` cannot go on, after stopping whatever it had launched.
   */
  readonly ready: Promise<void>;
  /**
   * Resolves, once everything is stopped again, if `start` had to give up after launching
   * (the API exited API_START_ATTEMPTS times in a row before it listened).
   */
  readonly failed: Promise<StartError>;
  /** Stops everything, in order; at any time, also while starting (it waits for that). Idempotent. */
  stop(): Promise<void>;
  /**
   * Tells every process `start` launched to stop now (a second Ctrl-C), without waiting: the API
   * and workers exit at once (a job in hand is redelivered by its lease), a redis-server of its
   * own writes its AOF and exits. The caller exits right after.
   */
  kill(): void;
}

/** Launches of the API in a row that exit before it listens, after which `start` gives up. */
export const API_START_ATTEMPTS = 3;

/** `start` cannot go on; the message says why in one line, naming the variable at fault. */
export class StartError extends Error {}

async function loadCatalog(config: Config): Promise<ModelCatalog> {
  try {
    return await loadServedCatalog(config.MODEL_REPOSITORY, config.MODELS);
  } catch (err) {
    throw err instanceof ModelRepositoryError ? new StartError(err.message) : err;
  }
}

/**
 * The autoscaler's bounds always include the worker count `start` was asked for (the config
 * refuses a minimum above the maximum).
 */
export function scalePolicy(config: Config, initial: number): ScalePolicy {
  return {
    min: Math.min(config.AUTOSCALE_MIN_WORKERS, initial),
    max: Math.max(config.AUTOSCALE_MAX_WORKERS, initial),
    intervalMs: config.AUTOSCALE_INTERVAL_MS,
    // Two heartbeats: every worker's count lands in each window at least once.
    rateWindowMs: Math.max(config.AUTOSCALE_INTERVAL_MS, 2 * config.WORKER_HEARTBEAT_INTERVAL_MS),
    upDepth: config.AUTOSCALE_UP_QUEUE_DEPTH,
    upDrainSeconds: config.AUTOSCALE_UP_DRAIN_SECONDS,
    upStep: config.AUTOSCALE_UP_STEP,
    downDepth: config.AUTOSCALE_DOWN_QUEUE_DEPTH,
    downAfterMs: config.AUTOSCALE_DOWN_AFTER_MS,
    downStep: config.AUTOSCALE_DOWN_STEP,
    cooldownMs: config.AUTOSCALE_COOLDOWN_MS,
  };
}

/**
 * API keys for this run. With none configured (and auth not switched off), `start` makes an
 * admin key for the run and prints it, so `npm start` works out of the box without leaving
 * the API open; the session secret is shared with its API process the same way.
 */
export function runKeys(config: Config): { env: Record<string, string>; banner: (url: string) => string[] } {
  if (config.AUTH_DISABLED) {
    return {
      env: {},
      banner: () => [
        "    auth      OFF (AUTH_DISABLED=true): every route is open to anyone who can reach it",
      ],
    };
  }
  const env: Record<string, string> = {};
  if (config.SESSION_SECRET === undefined) env.SESSION_SECRET = randomBytes(32).toString("base64url");
  if ((config.API_KEYS?.length ?? 0) > 0) {
    return { env, banner: () => [`    auth      ${config.API_KEYS?.length} API key(s) from API_KEYS`] };
  }
  const key = generateKey();
  env.API_KEYS = configEntry(key, "admin", "start");
  return {
    env,
    banner: (url) => [
      `    auth      admin key for this run (set API_KEYS to use your own; \`inferline keys create\`):`,
      `              export INFERLINE_API_KEY=${key}`,
      `    dashboard ${url}/dashboard (sign in with the key)`,
    ],
  };
}

/** A port free on `host` now, as the system hands one out for port 0. */
async function freePort(host: string): Promise<number> {
  const server = createServer().listen(0, host);
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, "close");
  return port;
}

/**
 * `inferline start`: Redis (found or started), one API process and N worker processes, the
 * worker count then following queue depth (AUTOSCALE_*) unless AUTOSCALE=false or N is 0.
 * Returns at once: `ready` says when everything is launched, and `stop()` may come earlier
 * (a Ctrl-C during start), so nothing launched is ever left running.
 */
export function runStart(config: Config, logger: Logger, opts: StartOptions): StartHandle {
  let announce: (url: string) => void = () => {};
  const url = new Promise<string>((r) => (announce = r));
  let giveUp: (err: StartError) => void = () => {};
  const failed = new Promise<StartError>((r) => (giveUp = r));
  const childStopMs = config.WORKER_SHUTDOWN_TIMEOUT_MS + 5000;
  let stopRequested = false;
  let redis: RedisHandle | undefined;
  let redisChild: ChildProcess | undefined;
  let supervisor: Supervisor | undefined;
  let pool: WorkerPool | undefined;
  let scaling: { autoscaler: Autoscaler; probe: QueueProbe } | undefined;
  let hangWatch: HangWatch | undefined;
  /** The autoscaler's, the hang watch's and the heartbeat cleanup's connection to Redis. */
  let connection: Redis | undefined;

  const launch = async (): Promise<void> => {
    // The repository first: a broken one would only make the API and the workers crash-loop.
    const catalog = await loadCatalog(config);
    redis = await ensureRedis(config, logger, opts.env.PATH, (child) => (redisChild = child));
    if (stopRequested) return;
    // PORT=0: one free port, chosen once, so that an API restarted after a crash listens where
    // the banner said.
    const port = config.PORT === 0 ? await freePort(config.HOST) : config.PORT;
    if (stopRequested) return;
    const keys = runKeys(config);
    // With workers: the autoscaler's, the hang watch's and the heartbeat cleanup's connection. A
    // command timeout, so a Redis that stops answering fails a reading instead of hanging it
    // (and with it the shutdown that waits for the reading in progress).
    const commands =
      opts.workers > 0
        ? createRedis(redis.url, "command", { commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS })
        : undefined;
    commands?.on("error", () => {});
    connection = commands;
    const registry =
      commands &&
      new WorkerRegistry(commands, config.REDIS_KEY_PREFIX, config.WORKER_HEARTBEAT_INTERVAL_MS * 3);
    const children = new Supervisor({
      entry: opts.entry,
      env: { ...opts.env, ...keys.env, REDIS_URL: redis.url },
      restartBackoffMs: config.SUPERVISOR_RESTART_BACKOFF_MS,
      stopTimeoutMs: childStopMs,
      logger,
      onMessage: (_name, m) => {
        const msg = m as { type?: string; url?: string };
        if (msg.type === "listening" && msg.url) announce(msg.url);
      },
      // A worker that died (crash, SIGKILL) could not remove its heartbeat: removed here, so
      // health and the dashboard stop counting it now rather than when the record expires.
      // (The API has no heartbeat: nothing is found for it.)
      onExit: (name, exit) => {
        if (exit.code === 0 || !registry) return;
        registry
          .removeProcess(hostname(), exit.pid)
          .catch((err: unknown) =>
            logger.debug(
              { event: "heartbeat_cleanup_failed", child: name, err },
              "could not remove a dead worker's heartbeat",
            ),
          );
      },
      onGiveUp: () => {
        const err = new StartError(
          `the API exited ${API_START_ATTEMPTS} times in a row before it listened on ${config.HOST}:${port} (its reason is above); stopped everything`,
        );
        void stop().then(() => giveUp(err));
      },
    });
    supervisor = children;
    children.add({
      name: "api",
      args: ["api", "--port", String(port)],
      readyWhen: (m) => (m as { type?: string }).type === "listening",
      giveUpAfter: API_START_ATTEMPTS,
    });
    const workers = new WorkerPool(
      children,
      ["worker"],
      config.METRICS_ENABLED ? config.WORKER_METRICS_PORT : 0,
      config.HOST,
    );
    pool = workers;
    await workers.scaleTo(opts.workers);

    const watchHangs = config.WORKER_HANG_TIMEOUT_MS > 0;
    if (registry && commands && !stopRequested && (config.AUTOSCALE || watchHangs)) {
      if (watchHangs) {
        hangWatch = new HangWatch({
          redis: commands,
          prefix: config.REDIS_KEY_PREFIX,
          registry,
          children: () =>
            workers.names().flatMap((name) => {
              const child = children.running(name);
              return child ? [{ name, ...child }] : [];
            }),
          kill: (child) => children.killChild(child.name, child.pid),
          timeoutMs: config.WORKER_HANG_TIMEOUT_MS,
          startGraceMs: config.WORKER_HANG_START_GRACE_MS,
          intervalMs: config.WORKER_HEARTBEAT_INTERVAL_MS,
          logger,
        });
        hangWatch.start();
      }

      if (config.AUTOSCALE) {
        const policy = scalePolicy(config, opts.workers);
        const probe = new QueueProbe(commands, config.REDIS_KEY_PREFIX, catalog.names(), registry);
        const autoscaler = new Autoscaler({
          policy,
          logger,
          sample: () => probe.sample(),
          current: () => workers.size(),
          scaleTo: (n) => workers.scaleTo(n),
        });
        scaling = { autoscaler, probe };
        autoscaler.start();
        logger.info(
          { event: "autoscaler_started", ...policy },
          `autoscaler: ${policy.min}..${policy.max} worker processes, checking every ${policy.intervalMs} ms`,
        );
      }
    }

    const { owned, leftRunning, answering } = redis;
    const redisLine = owned
      ? `started here on 127.0.0.1:${config.LOCAL_REDIS_PORT} (stopped on exit)`
      : leftRunning
        ? `left running by an earlier start on 127.0.0.1:${config.LOCAL_REDIS_PORT} (not stopped on exit: redis-cli -p ${config.LOCAL_REDIS_PORT} shutdown)`
        : answering === false
          ? "external, not answering yet (predictions answer 503 until it does)"
          : "external";
    void url.then((u) => {
      opts.print(
        [
          "",
          `  Inferline is up: ${u}`,
          ...keys.banner(u),
          `    predict   curl -s -XPOST ${u}/api/ml/sentiment -H 'content-type: application/json' -H 'Prefer: wait=5'${config.AUTH_DISABLED ? "" : ' -H "Authorization: Bearer $INFERLINE_API_KEY"'} -d '{"text":"I love it"}'`,
          `    models    ${u}/api/models`,
          `    health    ${u}/health`,
          `    redis     ${redisLine}`,
          `    workers   ${opts.workers} process(es)${scaling ? " (autoscaled on queue depth)" : ""}`,
          "  Ctrl-C stops everything gracefully.",
          "",
        ].join("\n"),
      );
    });
  };
  const launched = launch();

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      stopRequested = true;
      // Children killed before this stop (a drained worker, on a scale-down) are not its doing.
      const killedBefore = supervisor?.uncleanStops.length ?? 0;
      await launched.catch(() => {});
      // In order: no more scaling; workers finish the jobs in hand (the API still answers
      // their clients meanwhile); then the API; Redis last, once nothing needs it. Each step
      // has a deadline, so a Redis that stopped answering never keeps the children running.
      await runSteps(
        [
          {
            name: "stop hang watch",
            run: () => hangWatch?.stop(),
            timeoutMs: config.REDIS_COMMAND_TIMEOUT_MS * 2 + 1000,
          },
          {
            name: "stop autoscaler",
            run: () => scaling?.autoscaler.stop(),
            timeoutMs: config.REDIS_COMMAND_TIMEOUT_MS + 1000,
          },
          { name: "close queue probe", run: () => scaling?.probe.close(), timeoutMs: 2000 },
          {
            name: "drain workers",
            run: async () => {
              await pool?.scaleTo(0);
              await pool?.settled();
            },
            timeoutMs: childStopMs + 2000,
          },
          { name: "stop API", run: () => supervisor?.stop(), timeoutMs: childStopMs + 2000 },
          { name: "disconnect supervisor from Redis", run: () => connection?.disconnect() },
          { name: "stop Redis", run: () => redis?.stop(), timeoutMs: 15_000 },
        ],
        logger,
      );
      // A stop that had to kill a process is no clean stop: the exit status says so (1), so a
      // service manager or a script can tell it from one where every job in hand finished.
      const unclean = supervisor?.uncleanStops.slice(killedBefore) ?? [];
      if (unclean.length > 0) {
        logger.error(
          { event: "stop_unclean", children: unclean },
          `stopped, but not cleanly: ${unclean.join(", ")}`,
        );
        throw new Error(`stopped, but not cleanly: ${unclean.join(", ")}`);
      }
    })());

  const kill = () => {
    stopRequested = true;
    supervisor?.kill();
    // Its own process group keeps it from the terminal's Ctrl-C: it would outlive `start`.
    if (redisChild && redisChild.exitCode === null && redisChild.signalCode === null)
      redisChild.kill("SIGTERM");
  };

  return {
    url,
    failed,
    ready: launched.catch(async (err: unknown) => {
      await stop().catch(() => {}); // the start's own failure is the one to report
      throw err;
    }),
    stop,
    kill,
  };
}
