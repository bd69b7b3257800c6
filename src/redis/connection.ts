import { Cluster, Redis, type RedisOptions } from "ioredis";
import { coalesceWrites, type WriteGathering } from "./coalesce.js";

export type RedisRole =
  /** Request-path commands: fail fast when Redis is away instead of queueing them. */
  | "command"
  /** Blocking readers (BullMQ Worker, QueueEvents): wait and reconnect for ever. */
  | "blocking";

/**
 * Where Redis is, beyond one URL. Every process receives its Redis as one string (REDIS_URL,
 * passed unchanged from the supervisor to its children), so a cluster or a Sentinel group is
 * written as a URL too:
 *
 *   redis://[user:pass@]host1:7000,host2:7001,host3:7002?cluster=true   Redis Cluster seeds
 *   redis://[user:pass@]s1:26379,s2:26379?sentinel=mymaster             Sentinel-managed master
 *
 * `rediss://` turns TLS on for every node. `redisTargetUrl` builds these from
 * REDIS_CLUSTER_NODES / REDIS_SENTINELS / REDIS_SENTINEL_NAME.
 */
export interface RedisTopology {
  readonly kind: "single" | "cluster" | "sentinel";
  readonly nodes: readonly { host: string; port: number }[];
  readonly username?: string;
  readonly password?: string;
  readonly tls: boolean;
  readonly db?: number;
  readonly sentinelName?: string;
}

const URL_SHAPE = /^(rediss?):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]*)(?:\/(\d+))?\/?(?:\?([^#]*))?$/;

/** A port as written in a URL: decimal digits only (not "0x18eb" or "1e3"); else NaN. */
const decimal = (port: string) => (/^\d+$/.test(port) ? Number(port) : NaN);

/** Reads a Redis URL, including the multi-host cluster and Sentinel forms above. */
export function parseRedisUrl(url: string): RedisTopology {
  const m = URL_SHAPE.exec(url);
  if (!m) return { kind: "single", nodes: [], tls: url.startsWith("rediss:") };
  const [, scheme, user, pass, hosts = "", db, query = ""] = m;
  const params = new URLSearchParams(query);
  const nodes = hosts
    .split(",")
    .filter((h) => h.length > 0)
    .map((h) => {
      // host, host:port, [v6] or [v6]:port; a port that is no number is NaN (refused by config).
      const [, host = "", port] = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(h.trim()) ?? [];
      return { host: host.replace(/^\[|\]$/g, ""), port: port === undefined ? 6379 : decimal(port) };
    });
  const sentinelName = params.get("sentinel") ?? undefined;
  const clusterFlag = params.get("cluster");
  const kind =
    sentinelName !== undefined
      ? "sentinel"
      : clusterFlag === "true" || clusterFlag === "1" || nodes.length > 1
        ? "cluster"
        : "single";
  return {
    kind,
    nodes,
    username: user ? decodeURIComponent(user) : undefined,
    password: pass ? decodeURIComponent(pass) : undefined,
    tls: scheme === "rediss",
    db: db === undefined ? undefined : Number(db),
    sentinelName,
  };
}

/**
 * The one Redis URL every process of a deployment is given: `url` itself, or, when cluster
 * seeds or Sentinels are configured, the multi-host form carrying them (credentials and TLS
 * taken from `url`).
 */
export function redisTargetUrl(opts: {
  readonly url: string;
  readonly clusterNodes?: readonly string[];
  readonly sentinels?: readonly string[];
  readonly sentinelName?: string;
}): string {
  const hosts = opts.clusterNodes?.length
    ? opts.clusterNodes
    : opts.sentinels?.length
      ? opts.sentinels
      : undefined;
  if (!hosts) return opts.url;
  const m = URL_SHAPE.exec(opts.url);
  const scheme = m?.[1] ?? "redis";
  const auth = m?.[2] || m?.[3] ? `${m[2] ?? ""}${m[3] !== undefined ? `:${m[3]}` : ""}@` : "";
  const query = opts.clusterNodes?.length
    ? "cluster=true"
    : `sentinel=${encodeURIComponent(opts.sentinelName ?? "mymaster")}`;
  return `${scheme}://${auth}${hosts.join(",")}?${query}`;
}

/**
 * One factory for every Redis connection, so URLs with user, password and TLS (`rediss://`)
 * behave the same in the API, workers and supervisor. A cluster URL yields an ioredis Cluster
 * (BullMQ takes it as a connection; every key of one queue shares a hash tag). It is typed as
 * Redis for callers, whose commands all touch keys of one slot, which Cluster routes the same way.
 * Every connection gathers its commands into few writes: those of one event-loop turn, or with
 * `gathering` "callback" those of one callback (see coalesce.ts).
 */
export function createRedis(
  url: string,
  role: RedisRole,
  extra: RedisOptions = {},
  gathering: WriteGathering = "turn",
): Redis {
  return coalesceWrites(connect(url, role, extra), gathering);
}

function connect(url: string, role: RedisRole, extra: RedisOptions): Redis {
  const base: RedisOptions = {
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    lazyConnect: false,
  };
  const byRole: RedisOptions =
    role === "command"
      ? // No auto-pipelining: requests rarely issue commands in the same tick, and each
        // pipeline copies every script BullMQ defined on the connection.
        { enableOfflineQueue: false, maxRetriesPerRequest: 1 }
      : { enableOfflineQueue: true, maxRetriesPerRequest: null };
  const topology = parseRedisUrl(url);
  if (topology.kind === "single") return new Redis(url, { ...base, ...byRole, ...extra });

  const auth: RedisOptions = {
    username: topology.username,
    password: topology.password,
    ...(topology.tls ? { tls: {} } : {}),
  };
  if (topology.kind === "sentinel") {
    return new Redis({
      ...base,
      ...byRole,
      ...auth,
      sentinels: topology.nodes.map((n) => ({ host: n.host, port: n.port })),
      // Follow a switchover as soon as Sentinel announces it (+switch-master), not when the old
      // master drops the connection: until Sentinel demotes it, seconds later, it still takes
      // writes, which it discards when it resyncs as a replica (jobs answered 202, lost).
      failoverDetector: true,
      name: topology.sentinelName,
      sentinelPassword: topology.password,
      db: topology.db,
      ...extra,
    });
  }
  const { retryStrategy, enableOfflineQueue, maxRetriesPerRequest, ...nodeOptions } = {
    ...base,
    ...byRole,
    ...extra,
  };
  const cluster = new Cluster(
    topology.nodes.map((n) => ({ host: n.host, port: n.port })),
    {
      redisOptions: { ...nodeOptions, ...auth, maxRetriesPerRequest },
      clusterRetryStrategy: retryStrategy ?? undefined,
      enableOfflineQueue,
      // The ready check sends CLUSTER INFO to a random node; without an offline queue it fails
      // while that node is still connecting, and the client reconnects over and over. A slot
      // refresh that succeeded already proves the cluster answers; CLUSTERDOWN is retried below.
      enableReadyCheck: enableOfflineQueue !== false,
      // Slots move during resharding and failover: follow MOVED/ASK for a while before failing.
      maxRedirections: 16,
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 200,
    },
  );
  return cluster as unknown as Redis;
}

/**
 * Errors that mean "Redis is not there right now", as opposed to a bug or bad data. A Redis that
 * answers but refuses writes for now counts too: full (maxmemory under noeviction), a replica
 * (a failover under way), or unable to persist.
 */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const text = `${err.name} ${err.message} ${(err as { code?: string }).code ?? ""}`;
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EHOSTUNREACH|Connection is closed|enableOfflineQueue|Command timed out|MaxRetriesPerRequest|LOADING|Stream isn't writeable|Reached the max retries|Connection timeout|BUSY|CLUSTERDOWN|TRYAGAIN|Failed to refresh slots cache|None of startup nodes is available|OOM command not allowed|\bREADONLY\b|\bMASTERDOWN\b|\bNOREPLICAS\b|\bMISCONF\b/i.test(
    text,
  );
}

/** Resolves when the connection is ready or rejects after `ms`. */
export async function waitReady(redis: Redis, ms: number): Promise<void> {
  if (redis.status === "ready") return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis not ready after ${ms} ms`));
    }, ms);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off("ready", onReady);
    };
    redis.on("ready", onReady);
  });
}
