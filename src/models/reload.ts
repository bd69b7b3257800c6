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
  let next = await load();
  const { reports, expected } = await bus.request(timeoutMs);
  const failed = reports.flatMap((r) => r.failed.map((f) => ({ ...f, worker: r.worker })));
  for (const f of failed) {
    if (next.has(f.model) && next.versions(f.model).some((d) => d.version === f.version))
      next = next.without(f.model, f.version, `failed to load in worker ${f.worker}: ${f.reason}`);
  }
  catalog.adopt(next);
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
