import { createRequire } from "node:module";
import { pino, type Logger, type LoggerOptions } from "pino";
import type { Config } from "../config/index.js";

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
 * JSON lines (pino) for every process; pretty only in development on a terminal. `buffered`
 * trades the last 100 ms of lines on a SIGKILL for fewer writes: right for the API's line per
 * request, not for a worker, whose last lines before a crash tell which jobs it held.
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
  // Asynchronous writes: lines logged while a write is in flight go out together in the next one.
  // Buffered, they go out 4 KB at a time or within 100 ms, so under load a line rarely costs a
  // syscall of its own. Either way pino flushes on exit.
  const buffering = buffered ? { minLength: 4096, periodicFlush: 100 } : {};
  return pino(options, pino.destination({ dest: 1, sync: false, ...buffering }));
}

function canResolve(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}
