import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { z } from "zod";
import { parseRedisUrl } from "../redis/connection.js";

/** Where the package lives; defaults that point into the package are resolved from here. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
const num = (min: number, max: number) => z.coerce.number().min(min).max(max);
const bool = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");
/** A Redis URL's password as the connection reads it ("" when none); undefined when it cannot. */
function urlPassword(url: string): string | undefined {
  try {
    return parseRedisUrl(url).password ?? "";
  } catch {
    // Credentials that are not valid percent-encoding.
    return undefined;
  }
}

/** Whether the URL names where Redis is: every host given, each port a TCP port. */
function urlAddressed(url: string): boolean {
  if (!/^rediss?:\/\//.test(url)) return true; // Reported as such.
  let topology;
  try {
    topology = parseRedisUrl(url);
  } catch {
    return true; // Bad percent-encoding: reported as such.
  }
  const nodes = topology.nodes;
  return (
    nodes.length > 0 &&
    nodes.every((n) => n.host.length > 0 && Number.isInteger(n.port) && n.port >= 1 && n.port <= 65535) &&
    // One host is handed to the client as a URL: it must read it the same way.
    (topology.kind !== "single" || URL.canParse(url))
  );
}

const list = z
  .string()
  .transform((v) =>
    v
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s.length > 0),
  )
  .pipe(z.array(z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "lowercase names separated by commas")));

const hostPorts = z
  .string()
  .transform((v) =>
    v
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s.length > 0),
  )
  .pipe(z.array(z.string().regex(/^[^\s,:]+:\d{1,5}$/, "host:port entries separated by commas")).min(1));

/**
 * One TRUST_PROXY entry as the API's proxy check takes it: an address, an address with a prefix
 * length or netmask, or a named range. Checked here, so a typo stops the boot naming the
 * variable instead of failing later inside the HTTP server.
 */
function isProxyEntry(entry: string): boolean {
  if (entry === "loopback" || entry === "linklocal" || entry === "uniquelocal") return true;
  const [address = "", mask, ...rest] = entry.split("/");
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (mask === undefined) return true;
  if (/^\d{1,3}$/.test(mask)) return Number(mask) <= (family === 4 ? 32 : 128);
  return isIP(mask) === family;
}

/** An API key's name: a label for logs and rate limits. */
export const KEY_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** API_KEYS entries: `<sha256-hex>:<scope>[:<name>]`, separated by commas. */
const apiKeys = z.string().transform((v, ctx) => {
  const entries: { hash: string; scope: "predict" | "admin"; name: string }[] = [];
  for (const raw of v.split(",")) {
    const entry = raw.trim();
    if (entry.length === 0) continue;
    const [hash = "", scope = "", name] = entry.split(":");
    if (
      !/^[0-9a-f]{64}$/.test(hash) ||
      (scope !== "predict" && scope !== "admin") ||
      (name !== undefined && name !== "" && !KEY_NAME.test(name))
    ) {
      ctx.addIssue({
        code: "custom",
        message: `entry ${entries.length + 1} is not <sha256-hex>:<predict|admin>[:<name>] (a name is 1 to 64 letters, digits, _ . -)`,
      });
      return z.NEVER;
    }
    // The same key twice would get the scope of whichever entry comes first: downgrading a key
    // by adding an entry, without removing the old one, would depend on the order of lines.
    const earlier = entries.findIndex((e) => e.hash === hash);
    if (earlier >= 0) {
      ctx.addIssue({
        code: "custom",
        message: `entries ${earlier + 1} and ${entries.length + 1} are the same key; list each key once`,
      });
      return z.NEVER;
    }
    entries.push({ hash, scope, name: name || hash.slice(0, 8) });
  }
  return entries;
});

/**
 * Every environment variable Inferline reads. Each entry: schema with its default, and a
 * one-line description (unit and default) that README's configuration table and env.example
 * are generated from (`npx tsx scripts/config-docs.ts`).
 */
export const ENV_SCHEMA = {
  NODE_ENV: z
    .enum(["development", "production", "test"])
    .default("development")
    .describe(
      "development | production | test. `.env` is read outside production; logs are pretty only in development.",
    ),
  LOG_LEVEL: z
    .string()
    // WARN as well as warn, as other tools accept it.
    .transform((v) => v.toLowerCase())
    .pipe(z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]))
    .default("info")
    .describe("pino log level."),
  LOG_PRETTY: bool
    .optional()
    .describe("Human-readable logs (default: on in development on a terminal, off otherwise)."),
  HOST: z
    .string()
    .min(1)
    .default("127.0.0.1")
    .describe("Address the API listens on (0.0.0.0 in containers)."),
  PORT: int(0, 65535)
    .default(3000)
    .describe("API port (0 picks a free one; `start` picks it once and keeps it when the API restarts)."),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, "must start with redis:// or rediss://")
    .refine(urlAddressed, "must name a host, and a port from 1 to 65535 when it gives one: redis://host:port")
    // The deploy examples' placeholder passwords are public: Redis would be open to anyone.
    .refine((v) => urlPassword(v) !== undefined, "its user or password is not valid percent-encoding")
    .refine(
      (v) => !/^change-me/i.test(urlPassword(v) ?? ""),
      "its password is still the example value; use a long random one",
    )
    .optional()
    .describe(
      "Redis connection URL (redis:// or rediss://, user and password allowed). Unset: 127.0.0.1:LOCAL_REDIS_PORT, started by `inferline start` when nothing answers.",
    ),
  REDIS_KEY_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, _ . - only")
    .default("inferline")
    .describe("Prefix of every Redis key; each queue's keys share one hash tag so Redis Cluster works."),
  REDIS_COMMAND_TIMEOUT_MS: int(50, 60_000)
    .default(1000)
    .describe(
      "API: a Redis call slower than this answers 503 instead of hanging; `start`: an autoscaler reading slower than this is skipped (ms).",
    ),
  LOCAL_REDIS_PORT: int(1, 65535)
    .default(6379)
    .describe("`start` without REDIS_URL: loopback port to use, and to start redis-server on when free."),
  LOCAL_REDIS_DIR: z
    .string()
    .default(".inferline/redis")
    .describe("`start`: data folder (AOF) of a redis-server it starts itself."),
  MODEL_REPOSITORY: z
    .string()
    .default(path.join(PACKAGE_ROOT, "models"))
    .describe("Model repository folder: <name>/<version>/manifest.json (default: the package's models/)."),
  MODELS: list
    .optional()
    .describe("Comma-separated models to serve (default: every model in the repository)."),
  WORKERS: int(0, 64).default(2).describe("`start`: worker processes to run."),
  WORKER_CONCURRENCY: int(1, 1024)
    .default(32)
    .describe("Jobs one worker process takes at once per model (also bounds its batch size)."),
  WORKER_LOCK_DURATION_MS: int(500)
    .default(30_000)
    .describe("Job lease: a worker that stops renewing it for this long has its job redelivered (ms)."),
  WORKER_STALLED_INTERVAL_MS: int(500)
    .default(15_000)
    .describe("How often workers look for jobs whose lease expired (ms)."),
  WORKER_MAX_STALLED_COUNT: int(0, 100)
    .default(2)
    .describe("Times a job may lose its worker (crash) before it fails as stalled."),
  WORKER_SHUTDOWN_TIMEOUT_MS: int(0)
    .default(30_000)
    .describe("On SIGTERM, time to finish jobs in hand before exiting anyway (ms)."),
  WORKER_MAX_JOBS: int(0)
    .default(0)
    .describe(
      "Recycle a worker process after this many jobs, plus up to a tenth more drawn per process so that workers do not all recycle at once (0: never).",
    ),
  WORKER_MAX_RSS_BYTES: int(0)
    .default(1_610_612_736)
    .describe("Recycle a worker process once its RSS exceeds this (bytes; 0: never). Default 1.5 GiB."),
  WORKER_HEARTBEAT_INTERVAL_MS: int(100)
    .default(5000)
    .describe(
      "How often a worker publishes its heartbeat record, and API processes read the versions workers serve and the last model reload (ms).",
    ),
  ORT_INTRA_OP_THREADS: int(0, 256)
    .default(1)
    .describe(
      "ONNX Runtime threads per operator in each worker (0: one per core). Default 1: worker processes are the unit of parallelism.",
    ),
  ORT_INTER_OP_THREADS: int(0, 256)
    .default(1)
    .describe("ONNX Runtime threads running independent operators in parallel in each worker (0: default)."),
  INFERENCE_TIMEOUT_MS: int(10, 3_600_000)
    .default(30_000)
    .describe(
      "Longest one ONNX inference batch may take; past it the batch's jobs fail the attempt with `inference_timeout` (retried) and the session is replaced (ms). A manifest's `onnx.inferenceTimeoutMs` overrides it.",
    ),
  WORKER_MAX_STUCK_THREADS: int(0, 1000)
    .default(1)
    .describe(
      "Recycle a worker process once this many ONNX Runtime threads are stuck in timed-out inferences (each holds a core until the process ends; 0: never).",
    ),
  MODEL_IDLE_UNLOAD_SECONDS: int(0)
    .default(900)
    .describe(
      "Workers unload a model version other than the latest once no job asked for it this long, freeing its memory; a later job for it loads it again (s; 0: never).",
    ),
  MODEL_RELOAD_TIMEOUT_MS: int(100, 600_000)
    .default(30_000)
    .describe("POST /api/admin/models/reload: how long to wait for workers to load new versions (ms)."),
  AUTH_DISABLED: bool
    .default(false)
    .describe(
      "Turn API key checks off: every route is open (local experiments only; `start` says so in its banner).",
    ),
  ALLOWED_HOSTS: z
    .string()
    .transform((v) =>
      v
        .split(",")
        .map((s) => s.trim().toLowerCase().replace(/\.$/, ""))
        .filter((s) => s.length > 0),
    )
    .pipe(
      z.array(
        z
          .string()
          .regex(
            /^(\*|\.?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*)$/,
            "host names (a leading dot takes subdomains too, * any name) separated by commas, without port or scheme",
          ),
      ),
    )
    .optional()
    .describe(
      "With AUTH_DISABLED: more names the Host header may carry, separated by commas (`.example.com` also takes its subdomains, `*` any). Loopback names, IP addresses and HOST are always allowed; other names get 403.",
    ),
  API_KEYS: apiKeys
    .optional()
    .describe(
      "API keys as `<sha256-hex>:<predict|admin>[:<name>]` entries separated by commas (admin implies predict); `inferline keys create` prints one. Unset: `start` generates a key for its run, `api` answers 401.",
    ),
  API_KEYS_FILE: z
    .string()
    .optional()
    .describe("File with API_KEYS entries, one per line (# comments allowed), instead of API_KEYS."),
  SESSION_SECRET: z
    .string()
    .min(32, "at least 32 characters")
    // The deploy examples' placeholders are public: sessions signed with one could be forged.
    .refine((v) => !/^change-me/i.test(v.trim()), "still the example value; use 32+ random characters")
    .optional()
    .describe(
      "Signs dashboard session cookies; give every API instance the same one. Unset: random per process (sessions end on restart).",
    ),
  SESSION_SECRET_FILE: z.string().optional().describe("File holding SESSION_SECRET."),
  SESSION_TTL_SECONDS: int(60, 30 * 86_400)
    .default(43_200)
    .describe("How long a dashboard login lasts (s)."),
  REDIS_URL_FILE: z
    .string()
    .optional()
    .describe("File holding REDIS_URL (keeps a Redis password out of the environment listing)."),
  HEALTH_PUBLIC: bool
    .default(true)
    .describe("GET /health (detailed) without a key; false: it needs a key of any scope."),
  METRICS_PUBLIC: bool
    .default(true)
    .describe(
      "GET /metrics without a key (keep it off the public edge: the nginx config does); false: it needs a key.",
    ),
  TRUST_PROXY: z
    .string()
    .default("false")
    .transform((v, ctx): boolean | string => {
      if (v === "true" || v === "false") return v === "true";
      const entries = v
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
      const bad = entries.find((e) => !isProxyEntry(e));
      if (bad === undefined && entries.length > 0) return entries.join(",");
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(bad ?? v)} is not an address, a CIDR or loopback|linklocal|uniquelocal (use false, true or such entries separated by commas)`,
      });
      return z.NEVER;
    })
    .describe(
      "Take client address and scheme from X-Forwarded-* sent by these proxies: false, true (any), or addresses/CIDRs separated by commas.",
    ),
  CORS_ORIGINS: z
    .string()
    .transform((v) =>
      v
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    )
    .pipe(
      z.array(
        z
          .url({ protocol: /^https?$/ })
          .refine((u) => /^[^/]*\/\/[^/?#]*\/?$/.test(u), "an origin is scheme://host[:port], without a path")
          // Origins are matched exactly: a pattern would match no browser's Origin at all.
          .refine((u) => !u.includes("*"), "an origin is matched exactly: list each one, without wildcards")
          // As browsers write Origin: lower case, no trailing slash, no default port.
          .transform((u) => new URL(u).origin),
      ),
    )
    .optional()
    .describe("Origins allowed to call the API from browsers, separated by commas. Unset: CORS off."),
  RATE_LIMIT_KEY_RPS: num(0, 1_000_000)
    .default(100)
    .describe("Requests per second each API key may make, shared by all API instances (0: no limit)."),
  RATE_LIMIT_KEY_BURST: int(1)
    .default(200)
    .describe("Requests an API key may make at once above its rate before 429."),
  RATE_LIMIT_IP_RPS: num(0, 1_000_000)
    .default(10)
    .describe(
      "Requests per second per client address (IPv6: per /64) without a valid key (public routes, failed logins; 0: no limit).",
    ),
  RATE_LIMIT_IP_BURST: int(1)
    .default(50)
    .describe("Requests a client address without a valid key may make at once before 429."),
  JSON_MAX_DEPTH: int(1, 1000)
    .default(32)
    .describe("Deepest nesting of arrays and objects accepted in a JSON body; deeper gets 400."),
  SSE_MAX_STREAMS: int(0)
    .default(1000)
    .describe("Server-sent event streams one API process keeps open at once; more get 429."),
  JOB_ATTEMPTS: int(1, 100).default(3).describe("Attempts per job before it ends `failed`."),
  JOB_BACKOFF_MS: int(0).default(1000).describe("First retry delay; doubles each attempt (ms)."),
  JOB_BACKOFF_JITTER: num(0, 1).default(0.5).describe("Share of each retry delay that is randomised (0..1)."),
  RESULT_RETENTION_SECONDS: int(1)
    .default(3600)
    .describe(
      "Finished jobs and their results are kept this long (failed ones: FAILED_RETENTION_SECONDS), then removed (s): a read answers 404 from then on, and the API sweeps them out of Redis within a minute.",
    ),
  FAILED_RETENTION_SECONDS: int(1)
    .default(604_800)
    .describe(
      "Jobs that end failed stay this long in their model's failed set, the dead letters an admin lists, retries or removes (s); then they go as other finished jobs do.",
    ),
  FAILED_MAX_JOBS: int(1)
    .default(10_000)
    .describe("Most failed jobs kept per model: each new failure beyond it removes the oldest."),
  CACHE_ENABLED: bool
    .default(true)
    .describe("Serve repeated inputs from the result cache (TTL per model manifest)."),
  COALESCE_ENABLED: bool
    .default(true)
    .describe("A request whose input is already being computed joins that job instead of queueing another."),
  QUEUE_MAX_DEPTH: int(1)
    .default(10_000)
    .describe("Jobs waiting per model beyond which the API answers 429 (a manifest may set its own)."),
  QUEUE_DEPTH_READING_MS: int(0, 10_000)
    .default(100)
    .describe(
      "How old a queue-depth reading may be for a request that needs no cache lookup to skip the cap check in Redis while the queue, with this request, stays within half its cap (ms; 0: check every request).",
    ),
  IDEMPOTENCY_TTL_SECONDS: int(1).default(86_400).describe("How long an Idempotency-Key is remembered (s)."),
  BATCH_MAX_ITEMS: int(1, 10_000).default(256).describe("Most inputs one batch request may carry."),
  TIMEOUT_MAX_MS: int(1)
    .default(86_400_000)
    .describe("Largest per-request deadline (`timeout_ms`) accepted (ms)."),
  WAIT_MAX_SECONDS: int(0, 3600).default(60).describe("Cap on `Prefer: wait=N` (s)."),
  WAIT_MAX_HELD: int(1)
    .default(10_000)
    .describe(
      "Requests one API process holds waiting (`Prefer: wait`) at once; beyond it a request is answered at once, as without the preference.",
    ),
  BODY_LIMIT_BYTES: int(1024)
    .default(1_048_576)
    .describe("Largest request body accepted; larger gets 413 (bytes)."),
  SHUTDOWN_TIMEOUT_MS: int(0).default(10_000).describe("API: time to drain open requests on SIGTERM (ms)."),
  RETRY_AFTER_UNAVAILABLE_SECONDS: int(1, 3600)
    .default(5)
    .describe("Retry-After sent with 503 when Redis is unreachable (s)."),
  SUPERVISOR_RESTART_BACKOFF_MS: int(10)
    .default(1000)
    .describe(
      "`start`: first delay before restarting a crashed worker, or one that exited within 5 s of its launch; doubles up to 30 s (ms).",
    ),
  WORKER_HANG_TIMEOUT_MS: int(0)
    .default(60_000)
    .describe(
      "`start`: a worker it launched whose heartbeat has not been renewed for this long (an event loop stuck in a model, a stopped process) is killed (SIGKILL) and restarted like a crashed one (ms; 0: never). At least 3 × WORKER_HEARTBEAT_INTERVAL_MS; unset: 60000, or 12 heartbeat intervals when that is longer.",
    ),
  WORKER_HANG_START_GRACE_MS: int(0)
    .default(300_000)
    .describe(
      "`start`: how long a worker it launched may take to publish its first heartbeat (loading its models) before it counts as hung (ms).",
    ),
  REDIS_CLUSTER_NODES: hostPorts
    .optional()
    .describe(
      "`start`: Redis Cluster seed nodes, host:port separated by commas (user, password and TLS from REDIS_URL); passed to its processes as a cluster REDIS_URL. Unset: no cluster.",
    ),
  REDIS_SENTINELS: hostPorts
    .optional()
    .describe(
      "`start`: Redis Sentinel addresses, host:port separated by commas (password from REDIS_URL); passed to its processes as a Sentinel REDIS_URL. Unset: no Sentinel.",
    ),
  REDIS_SENTINEL_NAME: z
    .string()
    .min(1)
    .default("mymaster")
    .describe("Name of the master the Sentinels watch (with REDIS_SENTINELS)."),
  AUTOSCALE: bool
    .default(true)
    .describe(
      "`start`: scale worker processes on queue depth between AUTOSCALE_MIN_WORKERS and AUTOSCALE_MAX_WORKERS.",
    ),
  AUTOSCALE_MIN_WORKERS: int(1, 64)
    .default(2)
    .describe(
      "`start`: fewest worker processes the autoscaler keeps (lowered to WORKERS when that is smaller); not above AUTOSCALE_MAX_WORKERS. Unset while AUTOSCALE_MAX_WORKERS is set: 2 or that, whichever is smaller.",
    ),
  AUTOSCALE_MAX_WORKERS: int(1, 64)
    .default(10)
    .describe(
      "`start`: most worker processes the autoscaler runs (raised to WORKERS when that is larger). Unset while AUTOSCALE_MIN_WORKERS is set: 10 or that, whichever is larger.",
    ),
  AUTOSCALE_INTERVAL_MS: int(100)
    .default(30_000)
    .describe("`start`: how often the autoscaler reads queue depth and throughput (ms)."),
  AUTOSCALE_UP_QUEUE_DEPTH: int(1)
    .default(50)
    .describe("`start`: add workers when the queued jobs of all models exceed this."),
  AUTOSCALE_UP_DRAIN_SECONDS: int(1)
    .default(60)
    .describe(
      "`start`: also add workers when the queue would take longer than this to drain at the measured rate (s).",
    ),
  AUTOSCALE_UP_STEP: int(1, 64).default(2).describe("`start`: workers added per scale-up."),
  AUTOSCALE_DOWN_QUEUE_DEPTH: int(0)
    .default(10)
    .describe(
      "`start`: remove workers once the queued jobs stay under this for AUTOSCALE_DOWN_AFTER_MS (must be below AUTOSCALE_UP_QUEUE_DEPTH).",
    ),
  AUTOSCALE_DOWN_AFTER_MS: int(0)
    .default(300_000)
    .describe("`start`: how long the queue must stay shallow before workers are removed (ms)."),
  AUTOSCALE_DOWN_STEP: int(1, 64)
    .default(2)
    .describe("`start`: workers removed (drained gracefully) per scale-down."),
  AUTOSCALE_COOLDOWN_MS: int(0)
    .default(60_000)
    .describe("`start`: quiet time after any scaling step before the next one (ms)."),
  METRICS_ENABLED: bool
    .default(true)
    .describe(
      "Prometheus metrics (/metrics, worker metrics port) and cluster-wide stats (/api/stats, dashboard). Off: nothing is recorded, /metrics and /api/stats answer 404, and the dashboard has nothing to chart.",
    ),
  WORKER_METRICS_PORT: int(0, 65535)
    .default(9464)
    .describe(
      "Port a worker serves its Prometheus /metrics on, at HOST (0: off). Under `start`, each worker gets the lowest port from this up that is free and not held by another of its workers (a draining one keeps its port until it exits); its `metrics_listening` log line names it. A port in use is logged and skipped.",
    ),
  STATS_FLUSH_INTERVAL_MS: int(50, 600_000)
    .default(5000)
    .describe(
      "How often each process adds its counts to the per-minute stats buckets in Redis, in one round trip (ms).",
    ),
  STATS_RETENTION_SECONDS: int(120, 30 * 86_400)
    .default(86_400)
    .describe(
      "Per-minute stats buckets are kept this long (s). Default 24 h: the longest /api/stats window; a shorter retention shortens the windows to what it keeps.",
    ),
  HEALTH_WARMUP_MS: int(0)
    .default(60_000)
    .describe(
      "After start, /health is warming_up (and /health/ready 503) until Redis answered and a worker serving the models was seen, for at most this long (ms; 0: no warm-up).",
    ),
  HEALTH_ERROR_WINDOW_JOBS: int(1, 100_000)
    .default(100)
    .describe(
      "Error rate window: the last this-many finished jobs (also bounded by HEALTH_ERROR_WINDOW_MS).",
    ),
  HEALTH_ERROR_WINDOW_MS: int(1000)
    .default(300_000)
    .describe("Error rate window: jobs that finished within this time (ms)."),
  HEALTH_ERROR_MIN_JOBS: int(1)
    .default(10)
    .describe("Fewest finished jobs in the window before the error rate counts towards health."),
  HEALTH_ERROR_RATE_DEGRADED: num(0, 1)
    .default(0.05)
    .describe("Share of failed jobs in the window above which health is degraded (0..1)."),
  HEALTH_ERROR_RATE_UNHEALTHY: num(0, 1)
    .default(0.2)
    .describe("Share of failed jobs in the window above which health is unhealthy (0..1)."),
  HEALTH_QUEUE_DEPTH_DEGRADED: int(1)
    .default(1000)
    .describe("Jobs waiting (all models) above which health is degraded."),
  HEALTH_CACHE_HIT_RATE_MIN: num(0, 1)
    .default(0.2)
    .describe("Cache hit rate (over HEALTH_ERROR_WINDOW_MS) below which health is degraded (0..1)."),
  HEALTH_CACHE_MIN_LOOKUPS: int(1)
    .default(100)
    .describe("Fewest cache lookups in the window before the hit rate counts towards health."),
  HEALTH_MEMORY_MAX_RATIO: num(0.1, 1)
    .default(0.9)
    .describe(
      "API process memory (RSS against its cgroup limit, else heap against the V8 limit) above which health is unhealthy (0.1 to 1).",
    ),
} as const;

/**
 * Defaults that follow another variable when only that one is set, so that a variable set alone
 * never contradicts the default of one it is checked against below: AUTOSCALE_MAX_WORKERS=1
 * alone means a minimum of 1, AUTOSCALE_MIN_WORKERS=20 alone a maximum of 20, and a long
 * WORKER_HEARTBEAT_INTERVAL_MS a hang timeout of 12 of its intervals. Two variables both set that
 * contradict each other are refused.
 */
const FOLLOWING_DEFAULTS: readonly {
  readonly name: keyof typeof ENV_SCHEMA;
  readonly from: "AUTOSCALE_MIN_WORKERS" | "AUTOSCALE_MAX_WORKERS" | "WORKER_HEARTBEAT_INTERVAL_MS";
  readonly value: (from: number) => number;
}[] = [
  {
    name: "AUTOSCALE_MIN_WORKERS",
    from: "AUTOSCALE_MAX_WORKERS",
    value: (max) => Math.min(ENV_SCHEMA.AUTOSCALE_MIN_WORKERS.parse(undefined), max),
  },
  {
    name: "AUTOSCALE_MAX_WORKERS",
    from: "AUTOSCALE_MIN_WORKERS",
    value: (min) => Math.max(ENV_SCHEMA.AUTOSCALE_MAX_WORKERS.parse(undefined), min),
  },
  {
    name: "WORKER_HANG_TIMEOUT_MS",
    from: "WORKER_HEARTBEAT_INTERVAL_MS",
    value: (interval) => Math.max(ENV_SCHEMA.WORKER_HANG_TIMEOUT_MS.parse(undefined), 12 * interval),
  },
];

function withFollowingDefaults(raw: unknown): unknown {
  const set = raw as Record<string, string | undefined>;
  const vars = { ...set };
  for (const { name, from, value } of FOLLOWING_DEFAULTS) {
    if (set[name] !== undefined || set[from] === undefined) continue;
    // A bad value of the other variable is reported as such, and this one keeps its default.
    const other = ENV_SCHEMA[from].safeParse(set[from]);
    if (other.success) vars[name] = String(value(other.data));
  }
  return vars;
}

const object = z.object(ENV_SCHEMA).superRefine((env, ctx) => {
  // Thresholds the wrong way round make the autoscaler add and remove workers in turn.
  if (env.AUTOSCALE_DOWN_QUEUE_DEPTH >= env.AUTOSCALE_UP_QUEUE_DEPTH)
    ctx.addIssue({
      code: "custom",
      path: ["AUTOSCALE_DOWN_QUEUE_DEPTH"],
      message: `must be below AUTOSCALE_UP_QUEUE_DEPTH (${env.AUTOSCALE_UP_QUEUE_DEPTH}), or the autoscaler flaps between adding and removing workers`,
    });
  // Quietly dropping one of the bounds would run a worker count the operator ruled out. A bound
  // that is bad in itself is reported as such only.
  const bad = (name: string) => ctx.issues.some((i) => i.path?.[0] === name);
  if (
    env.AUTOSCALE_MIN_WORKERS > env.AUTOSCALE_MAX_WORKERS &&
    !bad("AUTOSCALE_MIN_WORKERS") &&
    !bad("AUTOSCALE_MAX_WORKERS")
  )
    ctx.addIssue({
      code: "custom",
      path: ["AUTOSCALE_MIN_WORKERS"],
      message: `must not be above AUTOSCALE_MAX_WORKERS (${env.AUTOSCALE_MAX_WORKERS}): the autoscaler cannot keep more workers than it may run`,
    });
  // Shorter than a few heartbeats, healthy workers would be killed between two of them.
  const interval = env.WORKER_HEARTBEAT_INTERVAL_MS;
  if (
    env.WORKER_HANG_TIMEOUT_MS > 0 &&
    env.WORKER_HANG_TIMEOUT_MS < 3 * interval &&
    !bad("WORKER_HANG_TIMEOUT_MS") &&
    !bad("WORKER_HEARTBEAT_INTERVAL_MS")
  )
    ctx.addIssue({
      code: "custom",
      path: ["WORKER_HANG_TIMEOUT_MS"],
      message: `must be 0 (off) or at least 3 × WORKER_HEARTBEAT_INTERVAL_MS (${3 * interval}): a worker renews its heartbeat only every ${interval} ms`,
    });
});
const schema = z.preprocess(withFollowingDefaults, object);
export type Env = z.infer<typeof schema>;

export class ConfigError extends Error {
  constructor(readonly issues: readonly string[]) {
    super(`Invalid configuration:\n  ${issues.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

/** Variables whose values are secrets: readable from `<NAME>_FILE`, never echoed in errors. */
const SECRETS = new Set(["API_KEYS", "SESSION_SECRET", "REDIS_URL"]);

/** Resolves `<NAME>_FILE` into `<NAME>` (in place); returns problems naming the variable. */
function readSecretFiles(vars: Record<string, string>): string[] {
  const problems: string[] = [];
  for (const name of SECRETS) {
    const file = vars[`${name}_FILE`];
    if (file === undefined) continue;
    if (vars[name] !== undefined) {
      problems.push(`${name}_FILE=${JSON.stringify(file)}: set ${name} or ${name}_FILE, not both`);
      continue;
    }
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      problems.push(
        `${name}_FILE=${JSON.stringify(file)}: cannot read it (${(err as NodeJS.ErrnoException).code ?? "error"})`,
      );
      continue;
    }
    // API_KEYS files hold one entry per line, with # comments; the others one value, taken as
    // written (a random secret may well start with #).
    const lines = text
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l.length > 0 && !(name === "API_KEYS" && l.startsWith("#")));
    const value = name === "API_KEYS" ? lines.join(",") : (lines[0] ?? "");
    if (value !== "") vars[name] = value;
  }
  return problems;
}

/** Parses the environment once. Throws ConfigError naming every bad variable. */
export function parseEnv(source: Readonly<Record<string, string | undefined>>): Env {
  // Empty strings mean "unset", as in most shells' `VAR=` usage.
  const cleaned: Record<string, string> = {};
  for (const key of Object.keys(ENV_SCHEMA)) {
    const v = source[key];
    if (v !== undefined && v !== "") cleaned[key] = v;
  }
  const fileProblems = readSecretFiles(cleaned);
  if (fileProblems.length > 0) throw new ConfigError(fileProblems);
  const parsed = schema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => {
        const key = String(i.path[0] ?? "?");
        const value = cleaned[key];
        if (value === undefined) return `${key} (default): ${i.message}`;
        const shown = SECRETS.has(key) ? "[redacted]" : JSON.stringify(value);
        return `${key}=${shown}: ${i.message}`;
      }),
    );
  }
  return parsed.data;
}
