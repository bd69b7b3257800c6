import { VersionNotFoundError } from "../errors/catalog.js";
import type { WorkerRecord } from "../telemetry/workers.js";
import type { ModelCatalog } from "./catalog.js";
import type { ModelDescriptor } from "./types.js";

/** How often the view is read while no live worker reports its versions (ms). */
const STARTING_MS = 500;

/** What the live workers say about one version of a model, as GET /api/models reports it. */
export interface VersionServing {
  /** Live workers that serve it; null while no live worker of the model reports its versions. */
  readonly workers: number | null;
  /** Live workers that failed to load it, and why. */
  readonly load_failed: readonly { worker: string; reason: string }[];
}

/** One model as the live workers report it. */
interface ModelReports {
  /** Live workers taking its jobs, and those that would were any of its versions to load. */
  readonly live: number;
  /** Those of them whose heartbeat lists the versions they serve. */
  readonly reporting: number;
  /** Version → live workers serving it. */
  readonly served: ReadonlyMap<string, number>;
  /** Version → live workers that failed to load it. */
  readonly failed: ReadonlyMap<string, readonly { worker: string; reason: string }[]>;
}

/**
 * Which version of a model requests go to, given what the live workers serve. The catalog is
 * what the repository holds; a version in it may not be served by any worker: its model file
 * failed to load there (workers then serve the version before it), or the workers have not
 * rescanned since it arrived. A request without a version goes to the newest version some live
 * worker serves and none failed to load (or, failing that, the newest some live worker serves);
 * while no live worker reports its versions (none yet, or workers of an older release), to the
 * newest in the catalog. A request pinned to a version that every live worker of the model failed
 * to load is answered `version_not_found` instead of queueing a job that cannot run.
 *
 * The view comes from the workers' heartbeat records, read every `refresh` (periodically, and
 * after a reload), never per request: resolving costs no Redis round trip.
 */
export class ServedVersions {
  private view: ReadonlyMap<string, ModelReports> = new Map();
  /** The latest version of each model at the last refresh, to log when it changes. */
  private routed = new Map<string, string>();
  private reads = 0;
  private applied = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly catalog: ModelCatalog,
    private readonly workers: () => Promise<readonly WorkerRecord[]>,
    private readonly events: {
      /** A refresh could not read the heartbeats (the previous view stays). */
      readonly onError?: (err: Error) => void;
      /** Requests without a version now go to `version`; `newest` is the catalog's newest. */
      readonly onLatest?: (model: string, version: string, newest: string) => void;
    } = {},
  ) {}

  /** Reads the heartbeats now. Never rejects: on failure the previous view stays. */
  async refresh(): Promise<void> {
    const seq = ++this.reads;
    let records: readonly WorkerRecord[];
    try {
      records = await this.workers();
    } catch (err) {
      this.events.onError?.(err as Error);
      return;
    }
    // A slow read that ends after a later one must not put its older view back.
    if (seq < this.applied) return;
    this.applied = seq;
    this.view = summarise(records);
    for (const name of this.catalog.names()) {
      const latest = this.latest(name).version;
      const before = this.routed.get(name);
      if (before === latest) continue;
      this.routed.set(name, latest);
      const newest = this.catalog.versions(name)[0]!.version;
      // Said at the first reading only when it is news: the newest version is not the one served.
      if (before !== undefined || latest !== newest) this.events.onLatest?.(name, latest, newest);
    }
  }

  /**
   * Refreshes every `intervalMs` until `stop`; every STARTING_MS instead while no live worker
   * reports its versions, so that when an API and its workers start together (a broken newest
   * version among the models) requests are routed by the first worker within moments of its
   * start, not an interval later.
   */
  start(intervalMs: number): void {
    if (this.timer) return;
    const next = () => {
      const starting = ![...this.view.values()].some((m) => m.reporting > 0);
      this.timer = setTimeout(
        () => void this.refresh().finally(() => this.timer && next()),
        starting ? Math.min(intervalMs, STARTING_MS) : intervalMs,
      );
      this.timer.unref();
    };
    next();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The version a request without one goes to (model_not_found for a model not served). */
  latest(name: string): ModelDescriptor {
    const list = this.catalog.versions(name);
    const m = this.view.get(name);
    if (!m || m.reporting === 0) return list[0]!;
    const served = (d: ModelDescriptor) => (m.served.get(d.version) ?? 0) > 0;
    return list.find((d) => served(d) && !m.failed.has(d.version)) ?? list.find(served) ?? list[0]!;
  }

  /**
   * The named version, or the latest one. version_not_found for a version the catalog lacks, or
   * one that no live worker serves and every live worker of the model failed to load.
   */
  resolve(name: string, version?: string): ModelDescriptor {
    if (version === undefined) {
      const latest = this.latest(name);
      // Not even the newest loads anywhere: the workers tried every version, newest first.
      if (this.unloadable(name, latest.version))
        throw new VersionNotFoundError(
          name,
          latest.version,
          [],
          `no version of it loads in any worker serving the model (GET /api/models/${name} says why)`,
        );
      return latest;
    }
    const found = this.catalog.resolve(name, version);
    if (this.unloadable(name, version)) {
      const available = this.catalog
        .versions(name)
        .map((d) => d.version)
        .filter((v) => !this.unloadable(name, v));
      throw new VersionNotFoundError(
        name,
        version,
        available,
        `it failed to load in every worker serving the model (GET /api/models/${name} says why)`,
      );
    }
    return found;
  }

  /** Whether no live worker serves this version and every one of the model failed to load it. */
  private unloadable(name: string, version: string): boolean {
    const m = this.view.get(name);
    const failed = m?.failed.get(version)?.length ?? 0;
    return m !== undefined && failed > 0 && failed >= m.live && (m.served.get(version) ?? 0) === 0;
  }

  /** What the live workers say about each version (null workers while none reports). */
  describe(name: string, version: string): VersionServing {
    const m = this.view.get(name);
    return {
      workers: m && m.reporting > 0 ? (m.served.get(version) ?? 0) : null,
      load_failed: m?.failed.get(version) ?? [],
    };
  }
}

/** Per model, what the running workers' heartbeats say (starting and draining ones take no jobs). */
function summarise(records: readonly WorkerRecord[]): Map<string, ModelReports> {
  const view = new Map<
    string,
    {
      live: number;
      reporting: number;
      served: Map<string, number>;
      failed: Map<string, { worker: string; reason: string }[]>;
    }
  >();
  const entry = (model: string) => {
    let m = view.get(model);
    if (!m) view.set(model, (m = { live: 0, reporting: 0, served: new Map(), failed: new Map() }));
    return m;
  };
  for (const r of records) {
    if (r.state !== "running") continue;
    for (const model of r.models) {
      const m = entry(model);
      m.live++;
      const versions = r.versions?.[model];
      if (!versions) continue;
      m.reporting++;
      for (const v of versions) m.served.set(v, (m.served.get(v) ?? 0) + 1);
      for (const f of r.load_failed ?? []) {
        if (f.model !== model) continue;
        addFailure(m.failed, f.version, r.id, f.reason);
      }
    }
    // A model none of whose versions loaded in this worker: it takes none of its jobs, yet it is
    // one of the model's workers, and its failures say why nothing serves the model.
    const unserved = new Set<string>();
    for (const f of r.load_failed ?? []) {
      if (r.models.includes(f.model)) continue;
      const m = entry(f.model);
      if (!unserved.has(f.model)) {
        unserved.add(f.model);
        m.live++;
        m.reporting++;
      }
      addFailure(m.failed, f.version, r.id, f.reason);
    }
  }
  return view;
}

/** Records that `worker` failed to load `version` (once per worker). */
function addFailure(
  failed: Map<string, { worker: string; reason: string }[]>,
  version: string,
  worker: string,
  reason: string,
): void {
  const list = failed.get(version) ?? [];
  if (!list.some((x) => x.worker === worker)) list.push({ worker, reason });
  failed.set(version, list);
}
