import type { ModelCatalog } from "../models/catalog.js";
import type { WorkerReloadReport } from "../models/reload.js";
import type { Logger } from "../telemetry/logger.js";
import type { ModelPool } from "./pool.js";

/**
 * Rescans the repository and loads the latest version of each served model. A version that
 * fails to load is dropped from this worker's catalog, so the previous one goes on serving;
 * the report says which and why. Also used at start, so a broken newest version does not stop
 * a worker from serving the one before it.
 */
export async function reloadModels(deps: {
  readonly workerId: string;
  readonly catalog: ModelCatalog;
  readonly pool: ModelPool;
  readonly load: () => Promise<ModelCatalog>;
  readonly models: readonly string[];
  readonly logger: Logger;
  /** Told of every version of the served models once the reload is done (metrics start at 0). */
  readonly onServed?: (model: string, version: string) => void;
}): Promise<WorkerReloadReport> {
  const { catalog, pool, logger } = deps;
  catalog.adopt(await deps.load());
  const loaded: { model: string; version: string }[] = [];
  const failed: { model: string; version: string; reason: string }[] = [];
  for (const model of deps.models) {
    while (catalog.has(model)) {
      const { version } = catalog.resolve(model);
      try {
        await pool.get(model, version);
        loaded.push({ model, version });
        break;
      } catch (err) {
        const reason = (err as Error).message;
        failed.push({ model, version, reason });
        logger.warn(
          { event: "model_load_failed", model, version },
          `${model}@${version} failed to load: ${reason}`,
        );
        catalog.adopt(catalog.without(model, version, reason));
      }
    }
  }
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
