import type { ModelCatalog } from "../models/catalog.js";
import type { LoadedModel, ModelDescriptor, ModelRuntime } from "../models/types.js";
import { Batcher } from "./batcher.js";

/**
 * Loaded models of one worker process, one per version, each with its batcher. Latest versions
 * are loaded and warmed at start; an older version a job asks for is loaded on first use.
 */
export class ModelPool {
  private readonly loaded = new Map<string, Promise<{ model: LoadedModel; batcher: Batcher }>>();

  constructor(
    private readonly catalog: ModelCatalog,
    private readonly runtimes: readonly ModelRuntime[],
    private readonly onBatch: (d: ModelDescriptor, size: number, ms: number) => void = () => {},
  ) {}

  get(name: string, version: string): Promise<{ model: LoadedModel; batcher: Batcher }> {
    const key = `${name}@${version}`;
    let entry = this.loaded.get(key);
    if (!entry) {
      entry = this.load(this.catalog.resolve(name, version));
      // A failed load is retried by the next job rather than cached for ever. Only this load is
      // forgotten: a reload may have unloaded it meanwhile and a newer load taken its place.
      const loading = entry;
      loading.catch(() => {
        if (this.loaded.get(key) === loading) this.loaded.delete(key);
      });
      this.loaded.set(key, entry);
    }
    return entry;
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
    const gone: { model: string; version: string }[] = [];
    for (const [key, entry] of this.loaded) {
      const at = key.lastIndexOf("@");
      const name = key.slice(0, at);
      const version = key.slice(at + 1);
      if (this.catalog.has(name) && this.catalog.versions(name).some((d) => d.version === version)) continue;
      this.loaded.delete(key);
      gone.push({ model: name, version });
      void entry.then(
        (e) => e.model.close(),
        () => {},
      );
    }
    return gone;
  }

  async close(): Promise<void> {
    const entries = await Promise.allSettled([...this.loaded.values()]);
    this.loaded.clear();
    const models = entries.flatMap((e) => (e.status === "fulfilled" ? [e.value.model] : []));
    await Promise.allSettled(models.map((m) => m.close()));
  }
}
