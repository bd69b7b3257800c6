import { hostname } from "node:os";
import type { Redis } from "ioredis";
import { globalKey } from "../queue/keys.js";
import type { Logger } from "../telemetry/logger.js";
import type { WorkerRegistry } from "../telemetry/workers.js";

/** A worker process the supervisor runs now. */
export interface WatchedChild {
  readonly name: string;
  readonly pid: number;
  /** When it was launched (epoch ms). */
  readonly launchedAt: number;
}

export interface HangWatchOptions {
  readonly redis: Redis;
  readonly prefix: string;
  /** Where workers publish their heartbeats. */
  readonly registry: WorkerRegistry;
  /** The worker processes to watch (draining ones excluded: their stop has a deadline of its own). */
  readonly children: () => readonly WatchedChild[];
  /** Ends a hung child (SIGKILL); its supervisor restarts it. */
  readonly kill: (child: WatchedChild) => void;
  /** A worker whose heartbeat has not been renewed for this long is hung (ms). */
  readonly timeoutMs: number;
  /** Time from a launch to the first heartbeat (loading models) before the worker counts as hung (ms). */
  readonly startGraceMs: number;
  /** How often to look (ms). */
  readonly intervalMs: number;
  readonly logger: Logger;
}

interface Seen {
  /** The heartbeat's last_seen as last read. */
  beat: string | undefined;
  /** When this watch saw the heartbeat change last, or started judging the child again (ms). */
  since: number;
}

/**
 * Kills worker processes of `inferline start` that stopped renewing their heartbeat without
 * exiting (an event loop stuck in a model that never returns, a process stopped by SIGSTOP):
 * such a process keeps its slot and serves nothing, and nothing else ever ends it.
 *
 * A child is judged on its own heartbeat record (its pid on this host): hung once the record has
 * not changed for `timeoutMs`, or, before its first heartbeat, once `startGraceMs` have passed
 * since its launch. Only while this watch can read and write Redis: when Redis is away or refuses
 * writes (full, read-only) no worker can beat either, so nothing is judged then, and afterwards
 * every child gets a full `timeoutMs` again. `stop()` is idempotent.
 */
export class HangWatch {
  private readonly seen = new Map<number, Seen>();
  private readonly host = hostname();
  private readonly probeKey: string;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** When the last look succeeded (undefined: none yet, or the one before failed). */
  private lastLook: number | undefined;

  constructor(private readonly opts: HangWatchOptions) {
    this.probeKey = globalKey(opts.prefix, "supervisor", `${this.host}:${process.pid}`);
  }

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => {
      // A slow look (Redis away) never stacks up ticks.
      this.running ??= this.look().then(
        () => void (this.running = undefined),
        () => void (this.running = undefined),
      );
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  /** One round: reads the heartbeats and kills the children found hung (also called by tests). */
  async look(): Promise<void> {
    const { opts } = this;
    let records;
    try {
      // Proves writes go through: a Redis that refuses them refuses the workers' heartbeats too.
      await opts.redis.set(this.probeKey, "1", "PX", Math.max(opts.intervalMs * 3, 1000));
      records = await opts.registry.list();
    } catch {
      this.lastLook = undefined;
      return;
    }
    if (this.stopped) return;
    const now = Date.now();
    // After a gap in the looks (Redis away, this process held up), nobody is judged on that gap.
    const blind = this.lastLook === undefined || now - this.lastLook > opts.intervalMs * 3;
    this.lastLook = now;
    const beats = new Map(records.filter((r) => r.host === this.host).map((r) => [r.pid, r.last_seen]));
    const children = opts.children();
    for (const pid of this.seen.keys()) if (!children.some((c) => c.pid === pid)) this.seen.delete(pid);

    for (const child of children) {
      let seen = this.seen.get(child.pid);
      if (!seen) this.seen.set(child.pid, (seen = { beat: undefined, since: now }));
      else if (blind) seen.since = now;
      const beat = beats.get(child.pid);
      if (beat !== undefined && beat !== seen.beat) {
        seen.beat = beat;
        seen.since = now;
        continue;
      }
      const first = seen.beat === undefined;
      const deadline = first
        ? Math.max(child.launchedAt + opts.startGraceMs, seen.since + opts.timeoutMs)
        : seen.since + opts.timeoutMs;
      if (now < deadline) continue;
      this.seen.delete(child.pid);
      const silentMs = now - (first ? child.launchedAt : seen.since);
      opts.logger.error(
        {
          event: "worker_hung",
          child: child.name,
          pid: child.pid,
          had_heartbeat: !first,
          silent_ms: silentMs,
          timeout_ms: first ? opts.startGraceMs : opts.timeoutMs,
        },
        first
          ? `${child.name} (pid ${child.pid}) sent no heartbeat within ${Math.round(silentMs / 1000)} s of its launch; killing it (SIGKILL) to restart it`
          : `${child.name} (pid ${child.pid}) sent no heartbeat for ${Math.round(silentMs / 1000)} s; killing it (SIGKILL) to restart it`,
      );
      opts.kill(child);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    await this.opts.redis.del(this.probeKey).catch(() => {});
  }
}
