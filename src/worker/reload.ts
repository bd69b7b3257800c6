import type { ModelCatalog } from "../models/catalog.js";
import type { WorkerReloadReport } from "../models/reload.js";
import type { Logger } from "../telemetry/logger.js";
import type { VersionLoadFailure } from "../telemetry/workers.js";
import type { ModelPool } from "./pool.js";

/**
 * Versions that failed to load in this process, by `model@version`. Versions are immutable, so
 * one that failed is left out of every later scan without a second try, until its folder is
 * removed (or the process restarts): a reload that loads a newer version must not bring it back
 * as served.
 */
export class LoadFailures {
  private readonly byKey = new Map<string, VersionLoadFailure>();

  /** Records a failure and leaves the version out of `catalog`; false if it was known already. */
  add(catalog: ModelCatalog, failure: VersionLoadFailure): boolean {
    const key = `${failure.model}@${failure.version}`;
    const known = this.byKey.has(key);
    this.byKey.set(key, failure);
    if (catalog.hasVersion(failure.model, failure.version))
      catalog.adopt(catalog.without(failure.model, failure.version, failure.reason));
    return !known;
  }

  /** Leaves the recorded versions out of a fresh scan; forgets those whose folder is gone. */
  leaveOut(catalog: ModelCatalog): void {
    for (const [key, f] of this.byKey) {
      if (catalog.hasVersion(f.model, f.version))
        catalog.adopt(catalog.without(f.model, f.version, f.reason));
      else this.byKey.delete(key);
    }
  }

  /** The failures recorded, of `models` only if given. */
  list(models?: readonly string[]): VersionLoadFailure[] {
    return [...this.byKey.values()].filter((f) => !models || models.includes(f.model));
  }
}

/**
 * Rescans the repository and loads the latest version of each served model. A version that
 * fails to load is dropped from this worker's catalog, so the previous one goes on serving;
 * the report says which and why (versions that failed before stay out without a second try,
 * and are reported again). Also used at start, so a broken newest version does not stop a
 * worker from serving the one before it.
 */
export async function reloadModels(deps: {
  readonly workerId: string;
  readonly catalog: ModelCatalog;
  readonly pool: ModelPool;
  readonly load: () => Promise<ModelCatalog>;
  readonly models: readonly string[];
  readonly failures: LoadFailures;
  readonly logger: Logger;
  /** Told of every version of the served models once the reload is done (metrics start at 0). */
  readonly onServed?: (model: string, version: string) => void;
}): Promise<WorkerReloadReport> {
  const { catalog, pool, logger, failures } = deps;
  catalog.adopt(await deps.load());
  failures.leaveOut(catalog);
  const loaded: { model: string; version: string }[] = [];
  for (const model of deps.models) {
    while (catalog.has(model)) {
      const { version } = catalog.resolve(model);
      try {
        await pool.get(model, version);
        loaded.push({ model, version });
        break;
      } catch (err) {
        const reason = (err as Error).message;
        logger.warn(
          { event: "model_load_failed", model, version },
          `${model}@${version} failed to load: ${reason}`,
        );
        failures.add(catalog, { model, version, reason });
      }
    }
  }
  // Those of earlier scans too: the API leaves each out of what it serves, and says `partial`
  // while the repository holds a version that does not load.
  const failed = failures.list(deps.models);
  for (const { model, version } of pool.unloadMissing())
    logger.info(
      { event: "model_unloaded", model, version },
      `${model}@${version} is no longer in the repository; unloaded`,
    );
  for (const model of deps.models.filter((m) => catalog.has(m)))
    for (const { version } of catalog.versions(model)) deps.onServed?.(model, version);
  logger.info({ event: "models_reloaded", loaded, failed: failed.length }, "model repository rescanned");
  return { worker: deps.workerId, loaded, failed };
}
