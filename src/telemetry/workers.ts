import type { Redis } from "ioredis";
import { globalKey } from "../queue/keys.js";

/** A model version a worker could not load, and why. */
export interface VersionLoadFailure {
  readonly model: string;
  readonly version: string;
  readonly reason: string;
}

/** A worker process's heartbeat, as health checks and the dashboard read it. */
export interface WorkerRecord {
  readonly id: string;
  readonly pid: number;
  readonly host: string;
  readonly models: readonly string[];
  /**
   * Per model in `models`, the versions this worker serves, newest first (its newest loaded and
   * warm, older ones loaded on first use). Absent in records of workers of older releases.
   */
  readonly versions?: Readonly<Record<string, readonly string[]>>;
  /**
   * Versions of its models that failed to load at its last scan of the repository (at start or
   * on a reload); it serves the version before each. Absent in records of older releases.
   */
  readonly load_failed?: readonly VersionLoadFailure[];
  readonly state: "starting" | "running" | "draining";
  readonly started_at: string;
  readonly last_seen: string;
  readonly processed: number;
  readonly failed: number;
  readonly rss_bytes: number;
  /** p99 event-loop delay since the previous heartbeat: proves job locks keep renewing. */
  readonly event_loop_delay_p99_ms: number;
}

/**
 * Heartbeat records in Redis: one key per worker expiring after `ttlMs`, indexed by a sorted
 * set scored by last-seen time. A worker that dies simply stops refreshing and drops out.
 */
export class WorkerRegistry {
  private readonly indexKey: string;
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlMs: number,
  ) {
    this.indexKey = globalKey(prefix, "workers");
  }

  private key(id: string): string {
    return globalKey(this.prefix, "worker", id);
  }

  async publish(record: WorkerRecord): Promise<void> {
    await this.redis
      .multi()
      .set(this.key(record.id), JSON.stringify(record), "PX", this.ttlMs)
      .zadd(this.indexKey, Date.now(), record.id)
      .zremrangebyscore(this.indexKey, "-inf", Date.now() - this.ttlMs * 10)
      .exec();
  }

  async remove(id: string): Promise<void> {
    await this.redis.multi().del(this.key(id)).zrem(this.indexKey, id).exec();
  }

  /**
   * Removes the records of process `pid` on `host`: one that died without removing its own (a
   * crash, SIGKILL), so health checks and the dashboard stop counting it at once instead of
   * when its record expires. Returns how many records it removed.
   */
  async removeProcess(host: string, pid: number): Promise<number> {
    const gone = (await this.list()).filter((r) => r.host === host && r.pid === pid);
    await Promise.all(gone.map((r) => this.remove(r.id)));
    return gone.length;
  }

  /** Workers seen within the TTL. */
  async list(): Promise<WorkerRecord[]> {
    const ids = await this.redis.zrangebyscore(this.indexKey, Date.now() - this.ttlMs, "+inf");
    if (ids.length === 0) return [];
    const raw = await this.redis.mget(ids.map((id) => this.key(id)));
    return raw.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as WorkerRecord);
  }
}
