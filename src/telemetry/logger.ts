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

/** JSON lines (pino) for every process; pretty only in development on a terminal. */
export function createLogger(config: Config, bindings: Record<string, unknown>): Logger {
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
  // Buffered asynchronous writes: lines go out 4 KB at a time, or within 100 ms when traffic is
  // light, so under load a line rarely costs a syscall of its own; pino flushes on exit.
  return pino(options, pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 100 }));
}

function canResolve(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}
