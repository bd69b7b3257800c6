import type { ModelCatalog } from "../models/catalog.js";
import type { LoadedModel, ModelDescriptor, ModelRuntime } from "../models/types.js";
import { Batcher } from "./batcher.js";

interface Entry {
  readonly model: LoadedModel;
  readonly batcher: Batcher;
}

/**
 * Loaded models of one worker process, one per version, each with its batcher. Latest versions
 * are loaded and warmed at start; an older version a job asks for is loaded on first use, and
 * unloaded again once no job asked for it for a while (see unloadIdle).
 */
export class ModelPool {
  private readonly loaded = new Map<string, Promise<Entry>>();
  /** Loads that succeeded, for the checks that cannot wait for a promise. */
  private readonly ready = new Map<string, Entry>();
  private readonly lastAsked = new Map<string, number>();
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly catalog: ModelCatalog,
    private readonly runtimes: readonly ModelRuntime[],
    private readonly onBatch: (d: ModelDescriptor, size: number, ms: number) => void = () => {},
  ) {}

  get(name: string, version: string): Promise<Entry> {
    const key = `${name}@${version}`;
    this.lastAsked.set(key, Date.now());
    let entry = this.loaded.get(key);
    if (!entry) {
      entry = this.load(this.catalog.resolve(name, version));
      // A failed load is retried by the next job rather than cached for ever. Only this load is
      // forgotten: a reload may have unloaded it meanwhile and a newer load taken its place.
      const loading = entry;
      loading.then(
        (e) => {
          if (this.loaded.get(key) === loading) this.ready.set(key, e);
        },
        () => {
          if (this.loaded.get(key) === loading) this.forget(key);
        },
      );
      this.loaded.set(key, entry);
    }
    return entry;
  }

  private forget(key: string): void {
    this.loaded.delete(key);
    this.ready.delete(key);
    this.lastAsked.delete(key);
  }

  private async load(d: ModelDescriptor) {
    const runtime = this.runtimes.find((r) => r.kind === d.kind);
    if (!runtime) throw new Error(`no runtime for model kind "${d.kind}"`);
    const model = await runtime.load(d);
    return { model, batcher: new Batcher(model, (size, ms) => this.onBatch(d, size, ms)) };
  }

  /** Loads the latest version of each model before the worker takes jobs. */
  async warm(names: readonly string[]): Promise<void> {
    await Promise.all(names.map((n) => this.get(n, this.catalog.resolve(n).version)));
  }

  /**
   * Unloads the versions the catalog no longer lists (their folders were removed or broke):
   * their jobs fail as not served anyway, and a session holds the model's memory until closed.
   */
  unloadMissing(): { model: string; version: string }[] {
    return this.unloadWhere((name, version) => !this.catalog.hasVersion(name, version));
  }

  /**
   * Unloads the versions other than each model's latest that no job asked for in `idleMs` and
   * that run nothing now: pinned old versions would otherwise hold their memory until their
   * folder goes. A later job for one loads it again (a cold start for that job).
   */
  unloadIdle(idleMs: number, now = Date.now()): { model: string; version: string }[] {
    return this.unloadWhere((name, version, key) => {
      if (this.catalog.has(name) && this.catalog.resolve(name).version === version) return false;
      const ready = this.ready.get(key);
      return ready !== undefined && ready.batcher.idle && now - (this.lastAsked.get(key) ?? 0) >= idleMs;
    });
  }

  /** Runs unloadIdle every so often (never when idleMs is 0) until the pool closes. */
  unloadIdleEvery(idleMs: number, onUnloaded: (v: { model: string; version: string }) => void): void {
    if (idleMs <= 0 || this.idleTimer) return;
    this.idleTimer = setInterval(() => this.unloadIdle(idleMs).forEach(onUnloaded), Math.min(idleMs, 60_000));
    this.idleTimer.unref();
  }

  private unloadWhere(
    drop: (name: string, version: string, key: string) => boolean,
  ): { model: string; version: string }[] {
    const gone: { model: string; version: string }[] = [];
    for (const [key, entry] of this.loaded) {
      const at = key.lastIndexOf("@");
      const name = key.slice(0, at);
      const version = key.slice(at + 1);
      if (!drop(name, version, key)) continue;
      this.forget(key);
      gone.push({ model: name, version });
      void entry.then(
        (e) => e.model.close(),
        () => {},
      );
    }
    return gone;
  }

  async close(): Promise<void> {
    clearInterval(this.idleTimer);
    const entries = await Promise.allSettled([...this.loaded.values()]);
    this.loaded.clear();
    this.ready.clear();
    const models = entries.flatMap((e) => (e.status === "fulfilled" ? [e.value.model] : []));
    await Promise.allSettled(models.map((m) => m.close()));
  }
}
