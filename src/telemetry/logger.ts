import { createRequire } from "node:module";
import { pino, type Logger, type LoggerOptions } from "pino";
import type { Config } from "../config/index.js";
import { endOfTurn } from "../lifecycle/end-of-turn.js";

export type { Logger } from "pino";

/** Paths pino blanks in every log line: keys, passwords, Redis URLs with credentials. */
export const REDACT_PATHS = [
  "req.headers.authorization",
  'req.headers["x-api-key"]',
  "req.headers.cookie",
  'res.headers["set-cookie"]',
  "headers.authorization",
  'headers["x-api-key"]',
  "*.password",
  "*.apiKey",
  "*.api_key",
  "redisUrl",
  "*.redisUrl",
  "REDIS_URL",
  "*.REDIS_URL",
  "SESSION_SECRET",
  "*.SESSION_SECRET",
  "*.headers.authorization",
  '*.headers["x-api-key"]',
  "*.headers.cookie",
  "*.token",
];

/**
 * JSON lines (pino) for every process; pretty only in development on a terminal. Lines logged
 * during one turn of the event loop go out in one write at its end, so a worker finishing a
 * batch of jobs makes one system call, not two per job, and its last lines before a crash still
 * tell which jobs it held (a job's "started" line is out before its model runs). `buffered`
 * trades the last 100 ms of lines on a SIGKILL for even fewer writes: right for the API's line
 * per request.
 */
export function createLogger(
  config: Config,
  bindings: Record<string, unknown>,
  { buffered = false }: { buffered?: boolean } = {},
): Logger {
  const options: LoggerOptions = {
    level: config.LOG_LEVEL,
    base: { pid: process.pid, ...bindings },
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  const pretty = config.LOG_PRETTY ?? (config.NODE_ENV === "development" && process.stdout.isTTY);
  if (pretty && canResolve("pino-pretty")) {
    return pino({ ...options, transport: { target: "pino-pretty", options: { colorize: true } } });
  }
  if (buffered) {
    // 4 KB at a time or within 100 ms, asynchronously; pino flushes on exit.
    return pino(options, pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 100 }));
  }
  return pino(options, writePerTurn(pino.destination({ dest: 1, sync: true, minLength: 8192 })));
}

type Destination = ReturnType<typeof pino.destination>;

/** Destinations holding lines until the end of the turn: written out on exit (one listener). */
const holding = new Set<Destination>();

/**
 * Holds what is written during one event-loop turn (up to the destination's minLength) and
 * writes it synchronously in `setImmediate`, after the turn's I/O callbacks; on exit, at once.
 */
function writePerTurn(dest: Destination): Destination {
  const write = dest.write.bind(dest);
  const flush = endOfTurn(() => dest.flush());
  dest.write = (data: string): boolean => {
    const ok = write(data);
    flush();
    return ok;
  };
  if (holding.size === 0) process.once("exit", () => holding.forEach((d) => d.flush()));
  holding.add(dest);
  return dest;
}

function canResolve(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}
