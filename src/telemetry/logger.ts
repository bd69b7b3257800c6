import { createRequire } from "node:module";
import { pino, type DestinationStream, type Logger, type LoggerOptions } from "pino";
import type { Config } from "../config/index.js";
import { endOfTurn } from "../lifecycle/end-of-turn.js";

export type { Logger } from "pino";

/** Fields that may hold a secret: keys, passwords, tokens, Redis URLs with credentials. */
const SECRET_FIELDS = [
  "password",
  "apiKey",
  "api_key",
  "token",
  "redisUrl",
  "REDIS_URL",
  "SESSION_SECRET",
  "API_KEYS",
  "headers.authorization",
  'headers["x-api-key"]',
  "headers.cookie",
  'headers["set-cookie"]',
];

/** The objects log lines carry that could hold such fields. */
const SECRET_HOLDERS = ["req", "res", "request", "response", "err", "error", "config", "options", "opts"];

/**
 * pino's redaction for every log line: the secret fields at the top of a line and inside the
 * objects lines carry. Named paths, not wildcards: a path starting with `*` makes pino clone and
 * walk every line it writes, costlier than writing the line, while a named path costs nothing on
 * lines without its first key.
 */
export const REDACTION = {
  paths: [
    ...SECRET_FIELDS,
    ...SECRET_HOLDERS.flatMap((holder) => SECRET_FIELDS.map((field) => `${holder}.${field}`)),
  ],
  censor: "[redacted]",
};

/**
 * JSON lines (pino) for every process; pretty only in development on a terminal. Lines logged
 * during one turn of the event loop go out in one write at its end, so a worker finishing a
 * batch of jobs makes one system call, not two per job, and its last lines before a crash still
 * tell which jobs it held (a job's "started" line is out before its model runs). `buffered`
 * trades the last 100 ms of lines on a SIGKILL for even fewer writes: right for the API's line
 * per request.
 *
 * Every write holds whole lines and at most PIPE_BUF bytes: `inferline start`'s processes share
 * one standard output, and only a write that small reaches a pipe in one piece, so lines of two
 * processes never interleave when the reader falls behind (a longer single line still can).
 */
export function createLogger(
  config: Config,
  bindings: Record<string, unknown>,
  { buffered = false }: { buffered?: boolean } = {},
): Logger {
  const options: LoggerOptions = {
    level: config.LOG_LEVEL,
    base: { pid: process.pid, ...bindings },
    redact: REDACTION,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  const pretty = config.LOG_PRETTY ?? (config.NODE_ENV === "development" && process.stdout.isTTY);
  if (pretty && canResolve("pino-pretty")) {
    return pino({ ...options, transport: { target: "pino-pretty", options: { colorize: true } } });
  }
  if (buffered) {
    // A whole PIPE_BUF at a time or within 100 ms, asynchronously; pino flushes on exit.
    return pino(options, pino.destination({ dest: 1, sync: false, ...PIPE_SIZED, periodicFlush: 100 }));
  }
  return pino(options, writePerTurn(pino.destination({ dest: 1, sync: true, maxWrite: PIPE_BUF })));
}

/** The most a write to a pipe may carry and still arrive in one piece (POSIX PIPE_BUF on Linux). */
const PIPE_BUF = 4096;

/** Writes of whole lines, each at most PIPE_BUF bytes, made once a full one is held. */
const PIPE_SIZED = { maxWrite: PIPE_BUF, minLength: PIPE_BUF - 1 };

/** Line holders written out on exit (one listener for all). */
const holding = new Set<() => void>();

/**
 * Holds the lines written during one event-loop turn (whole lines, at most PIPE_BUF bytes) and
 * hands them to `dest`, a synchronous destination that writes what it is given at once, in
 * `setImmediate`, after the turn's I/O callbacks; on exit, at once. Not the destination's own
 * flushSync: that also asks the disk to sync a file, a cost no log line needs per turn.
 */
function writePerTurn(dest: DestinationStream): DestinationStream {
  let held = "";
  let heldBytes = 0;
  const release = () => {
    if (heldBytes === 0) return;
    const out = held;
    held = "";
    heldBytes = 0;
    dest.write(out);
  };
  const atEndOfTurn = endOfTurn(release);
  if (holding.size === 0) process.once("exit", () => holding.forEach((r) => r()));
  holding.add(release);
  return {
    write(line: string) {
      const bytes = Buffer.byteLength(line);
      if (heldBytes + bytes > PIPE_BUF) release();
      held += line;
      heldBytes += bytes;
      atEndOfTurn();
    },
    // pino's logger.flush(cb): what a process about to end without exit handlers (a kill of
    // itself) calls to get its last lines out. Each held line is written by then.
    flush(cb?: (err?: Error) => void) {
      release();
      cb?.();
    },
    flushSync: release,
  } as DestinationStream;
}

function canResolve(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}
