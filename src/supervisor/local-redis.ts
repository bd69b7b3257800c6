import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, realpathSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import type { Config } from "../config/index.js";
import { createRedis, waitReady } from "../redis/connection.js";
import { connectAtBoot, RedisUrlError } from "../redis/preflight.js";
import type { Logger } from "../telemetry/logger.js";
import { terminateChild } from "./terminate.js";

export class RedisNotAvailableError extends Error {}

export interface RedisHandle {
  readonly url: string;
  /** True when `start` launched this redis-server itself (it stops it on exit). */
  readonly owned: boolean;
  /**
   * True when the Redis found on LOCAL_REDIS_PORT keeps its data in LOCAL_REDIS_DIR: one an
   * earlier `start` launched and could not stop (it was killed). Nothing stops it on exit.
   */
  readonly leftRunning?: boolean;
  /** False when REDIS_URL did not answer at start (the processes wait for it). */
  readonly answering?: boolean;
  stop(): Promise<void>;
}

/** The folder the Redis at `url` keeps its data in (CONFIG GET dir), if it says. */
async function redisDataDir(url: string, ms: number): Promise<string | undefined> {
  const probe = createRedis(url, "command", { retryStrategy: () => null, connectTimeout: ms });
  probe.on("error", () => {});
  try {
    await waitReady(probe, ms);
    const reply = (await probe.config("GET", "dir")) as string[];
    return reply[1];
  } catch {
    // CONFIG renamed or refused: nothing to tell.
    return undefined;
  } finally {
    probe.disconnect();
  }
}

/** True when Redis at `url` answers PING within `ms`; never throws, never retries. */
export async function redisAnswers(url: string, ms: number): Promise<boolean> {
  const probe = createRedis(url, "command", { retryStrategy: () => null, connectTimeout: ms });
  probe.on("error", () => {});
  try {
    await waitReady(probe, ms);
    return (await probe.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

/**
 * Whether Redis at `url` answers within `ms`; throws RedisNotAvailableError (saying why, naming
 * REDIS_URL) when it refuses the URL's credentials or database, which launching the API and
 * workers only to see them exit could not fix.
 */
async function reachable(url: string, ms: number): Promise<boolean> {
  const probe = createRedis(url, "command", { retryStrategy: () => null, connectTimeout: ms });
  probe.on("error", () => {});
  try {
    return await connectAtBoot(probe, url, ms);
  } catch (err) {
    throw err instanceof RedisUrlError ? new RedisNotAvailableError(err.message) : err;
  } finally {
    probe.disconnect();
  }
}

function onPath(binary: string, pathVar: string | undefined): string | undefined {
  for (const dir of (pathVar ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, binary);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Redis for `inferline start`: REDIS_URL when set; else 127.0.0.1:LOCAL_REDIS_PORT if it
 * answers; else a redis-server from PATH started as a child (loopback only, AOF on, data under
 * LOCAL_REDIS_DIR). Without one, a message that says how to get Redis.
 * `spawned` gets that child as soon as it is launched, before it answers, so that `start` can
 * stop it even while it is still coming up.
 */
export async function ensureRedis(
  config: Config,
  logger: Logger,
  pathVar: string | undefined,
  spawned: (child: ChildProcess) => void = () => {},
): Promise<RedisHandle> {
  const target = config.redisUrl;
  const none = { url: target, owned: false, stop: async () => {} };
  if (config.redisUrlFromEnv) {
    const answering = await reachable(target, 2000);
    if (!answering) {
      logger.warn(
        { event: "redis_unreachable" },
        "REDIS_URL does not answer yet; the API answers 503 until it does",
      );
    }
    return { ...none, answering };
  }
  if (await redisAnswers(config.redisUrl, 1000)) {
    const dir = path.resolve(config.LOCAL_REDIS_DIR);
    const found = await redisDataDir(config.redisUrl, 1000);
    const leftRunning = found !== undefined && existsSync(dir) && found === realpathSync(dir);
    if (leftRunning)
      logger.warn(
        { event: "redis_found", port: config.LOCAL_REDIS_PORT, left_running: true, dir },
        `using the redis-server an earlier inferline start left running on 127.0.0.1:${config.LOCAL_REDIS_PORT} (data in ${dir}); it is not stopped on exit: redis-cli -p ${config.LOCAL_REDIS_PORT} shutdown stops it`,
      );
    else
      logger.info(
        { event: "redis_found", port: config.LOCAL_REDIS_PORT },
        `using the Redis answering on 127.0.0.1:${config.LOCAL_REDIS_PORT}`,
      );
    return { ...none, leftRunning };
  }
  const binary = onPath("redis-server", pathVar);
  if (!binary) {
    throw new RedisNotAvailableError(
      [
        `No Redis answers on 127.0.0.1:${config.LOCAL_REDIS_PORT} and redis-server is not on PATH.`,
        "Either install Redis (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)",
        "or point Inferline at one: REDIS_URL=redis://host:6379 npm start",
      ].join("\n"),
    );
  }
  const dir = path.resolve(config.LOCAL_REDIS_DIR);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new RedisNotAvailableError(
      `LOCAL_REDIS_DIR=${JSON.stringify(config.LOCAL_REDIS_DIR)}: cannot create the folder for redis-server's data (${code})`,
    );
  }
  const args = [
    "--port",
    String(config.LOCAL_REDIS_PORT),
    "--bind",
    "127.0.0.1",
    "--protected-mode",
    "yes",
    "--dir",
    dir,
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--save",
    "",
    "--daemonize",
    "no",
    "--loglevel",
    "warning",
  ];
  // A process group of its own, so the terminal's Ctrl-C does not stop Redis under workers that
  // are still finishing their jobs: `start` stops it last.
  const child: ChildProcess = spawn(binary, args, {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  spawned(child);
  const said = relayOutput(child, logger);
  // Once it has exited and its output is read to the end.
  const closed = new Promise<void>((r) => child.once("close", () => r()));
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break;
    if (await redisAnswers(config.redisUrl, 500)) {
      logger.info(
        { event: "redis_started", port: config.LOCAL_REDIS_PORT, dir },
        `started redis-server on 127.0.0.1:${config.LOCAL_REDIS_PORT} (data in ${dir})`,
      );
      let stopping: Promise<void> | undefined;
      return {
        url: config.redisUrl,
        owned: true,
        stop: () => (stopping ??= terminateChild(child, closed, 10_000)),
      };
    }
    await sleep(100);
  }
  child.kill("SIGKILL");
  // Its last words, for the message; the timer alone does not keep the process alive.
  await Promise.race([closed, sleep(2000, undefined, { ref: false })]);
  throw new RedisNotAvailableError(
    `LOCAL_REDIS_PORT=${config.LOCAL_REDIS_PORT}: redis-server (${binary}) did not start there (${said() || "it said nothing"}; another program on that port? set LOCAL_REDIS_PORT or REDIS_URL)`,
  );
}

/** Lines of redis-server's output kept to say why it did not start. */
const LAST_LINES = 3;

/**
 * Passes redis-server's output on as log lines, one per line it writes. Its output would
 * otherwise share standard output with the JSON log, and a line it writes in pieces (as from its
 * signal handler) could land inside one of ours. Returns what it said last, for an error message.
 */
function relayOutput(child: ChildProcess, logger: Logger): () => string {
  const last: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream, crlfDelay: Infinity }).on("line", (line) => {
      if (!line.trim()) return;
      // Without its prefix ("pid:role date time level-mark ", or "pid:signal-handler (time) "):
      // what it says.
      const text = line.replace(/^\d+:(?:[A-Z] .*? [.*#-]|signal-handler \(\d+\)) /, "").trim();
      last.push(text);
      if (last.length > LAST_LINES) last.shift();
      logger.info({ event: "redis_output", line }, `redis-server: ${text}`);
    });
  }
  return () => last.join(" / ");
}
