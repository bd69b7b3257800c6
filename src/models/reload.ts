import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { globalKey } from "../queue/keys.js";
import type { ModelCatalog } from "./catalog.js";

/** What one worker process says after rescanning the repository. */
export interface WorkerReloadReport {
  readonly worker: string;
  /** Versions that are now loaded and warm (new ones and those already serving). */
  readonly loaded: readonly { model: string; version: string }[];
  /** Versions that failed to load: the worker goes on serving the previous one. */
  readonly failed: readonly { model: string; version: string; reason: string }[];
}

export interface ReloadOutcome {
  readonly models: readonly { name: string; latest_version: string; versions: readonly string[] }[];
  readonly failed: readonly { model: string; version: string; reason: string; worker: string }[];
  /** Manifests that could not be read (those versions are not served). */
  readonly problems: readonly { path: string; message: string }[];
  readonly workers: readonly WorkerReloadReport[];
  /** Workers the request reached that did not answer within the timeout. */
  readonly unanswered: number;
}

interface ReloadRequest {
  readonly id: string;
  readonly reply: string;
}

export function reloadChannel(prefix: string): string {
  return globalKey(prefix, "models", "reload");
}

/** The record of the last reload an API process ran, for the others (see ReloadFollower). */
export function reloadedKey(prefix: string): string {
  return globalKey(prefix, "models", "reloaded");
}

type FailedVersion = Pick<ReloadOutcome["failed"][number], "model" | "version" | "reason" | "worker">;

/**
 * Reload over Redis pub/sub. The API publishes a request; every worker process subscribed
 * rescans the repository, loads and warms new versions, and publishes what it loaded and what
 * failed on the request's reply channel. PUBLISH's receiver count says how many replies to
 * expect.
 */
export class ReloadBus {
  constructor(
    private readonly publisher: Redis,
    private readonly subscriber: () => Redis,
    private readonly prefix: string,
  ) {}

  /** API side: asks every worker to reload and collects their reports until `timeoutMs`. */
  async request(timeoutMs: number): Promise<{ reports: WorkerReloadReport[]; expected: number }> {
    const id = randomBytes(8).toString("hex");
    const reply = `${reloadChannel(this.prefix)}:reply:${id}`;
    const sub = this.subscriber();
    const reports: WorkerReloadReport[] = [];
    try {
      let expected = Infinity;
      let done: () => void = () => {};
      const finished = new Promise<void>((r) => (done = r));
      sub.on("message", (channel: string, message: string) => {
        if (channel !== reply) return;
        try {
          reports.push(JSON.parse(message) as WorkerReloadReport);
        } catch {
          return;
        }
        if (reports.length >= expected) done();
      });
      await sub.subscribe(reply);
      const request: ReloadRequest = { id, reply };
      expected = await this.publisher.publish(reloadChannel(this.prefix), JSON.stringify(request));
      if (reports.length >= expected) done();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([finished, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
      return { reports, expected };
    } finally {
      sub.disconnect();
    }
  }

  /** Worker side: answers every reload request with `handle`'s report. Returns a stop function. */
  async listen(
    handle: () => Promise<WorkerReloadReport>,
    onError: (err: Error) => void,
  ): Promise<() => void> {
    const sub = this.subscriber();
    let chain = Promise.resolve();
    sub.on("message", (_channel: string, message: string) => {
      let request: ReloadRequest;
      try {
        request = JSON.parse(message) as ReloadRequest;
      } catch {
        return;
      }
      // One reload at a time per worker: a second request waits for the first.
      chain = chain.then(async () => {
        try {
          await this.publisher.publish(request.reply, JSON.stringify(await handle()));
        } catch (err) {
          onError(err as Error);
        }
      });
    });
    await sub.subscribe(reloadChannel(this.prefix));
    return () => sub.disconnect();
  }
}

/**
 * The API's reload: rescans the repository, has the workers load what is new, and serves a
 * version only if no worker failed to load it (otherwise the previous version stays latest).
 * With no worker listening, the rescanned catalog is served as it is.
 */
export async function reloadCatalog(
  catalog: ModelCatalog,
  load: () => Promise<ModelCatalog>,
  bus: Pick<ReloadBus, "request">,
  timeoutMs: number,
): Promise<ReloadOutcome> {
  const next = await load();
  const { reports, expected } = await bus.request(timeoutMs);
  const failed = reports.flatMap((r) => r.failed.map((f) => ({ ...f, worker: r.worker })));
  catalog.adopt(withoutFailed(next, failed));
  return {
    models: catalog.names().map((name) => {
      const versions = catalog.versions(name).map((d) => d.version);
      return { name, latest_version: versions[0]!, versions };
    }),
    failed,
    problems: catalog.problems.map((p) => ({ path: p.path, message: p.message })),
    workers: reports,
    unanswered: Math.max(0, expected - reports.length),
  };
}

/** `catalog` without the versions that failed to load in some worker (each reported as a problem). */
export function withoutFailed(catalog: ModelCatalog, failed: readonly FailedVersion[]): ModelCatalog {
  let next = catalog;
  for (const f of failed) {
    if (next.hasVersion(f.model, f.version))
      next = next.without(f.model, f.version, `failed to load in worker ${f.worker}: ${f.reason}`);
  }
  return next;
}

/**
 * Keeps the catalogs of all API processes in step. A reload request reaches one API process
 * (through the load balancer); it records the outcome in Redis, and every other one, reading that
 * record every `start` interval, rescans the repository and serves it without the versions that
 * failed in workers, as the first did. A record, not a message: a process that was away from
 * Redis at the time still finds it, and reading it takes the connection the process already has.
 */
export class ReloadFollower {
  /** The id of the last reload followed (or run) here; null before the first reading. */
  private seen: string | null | undefined = null;
  private checking: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    /**
     * When this process scanned the repository itself (epoch ms): a reload before then is in its
     * scan. Clocks of other hosts may be off a little; following a reload twice is harmless.
     */
    private readonly since: number,
    /** Rescans the repository and serves it without `failed`. */
    private readonly apply: (failed: readonly FailedVersion[]) => Promise<void>,
    private readonly onError: (err: Error) => void = () => {},
  ) {}

  /** After a reload this process ran: records it for the others. */
  async announce(failed: readonly FailedVersion[]): Promise<void> {
    const record: ReloadRecord = { id: randomBytes(8).toString("hex"), at: Date.now(), failed };
    await this.redis.set(reloadedKey(this.prefix), JSON.stringify(record));
    // Only once written: were it refused, the record would still hold an older reload, which
    // this process must not follow (it would put back what its own reload just left out).
    this.seen = record.id;
  }

  /** Reads the record of the last reload and follows it if another process ran it since. */
  check(): Promise<void> {
    this.checking ??= this.checkNow()
      .catch((err: unknown) => this.onError(err as Error))
      .finally(() => (this.checking = undefined));
    return this.checking;
  }

  private async checkNow(): Promise<void> {
    const raw = await this.redis.get(reloadedKey(this.prefix));
    let record: ReloadRecord | undefined;
    try {
      record = raw === null ? undefined : (JSON.parse(raw) as ReloadRecord);
    } catch {
      record = undefined;
    }
    const first = this.seen === null;
    if (!record || record.id === this.seen || !Array.isArray(record.failed)) {
      if (first) this.seen = record?.id;
      return;
    }
    this.seen = record.id;
    if (first && record.at < this.since) return;
    await this.apply(record.failed);
  }

  /** Checks every `intervalMs` until `stop`. */
  start(intervalMs: number): void {
    this.timer ??= setInterval(() => void this.check(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

interface ReloadRecord {
  readonly id: string;
  /** Epoch ms of the reload. */
  readonly at: number;
  readonly failed: readonly FailedVersion[];
}
