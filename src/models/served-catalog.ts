import { ModelCatalog } from "./catalog.js";

/** The model repository cannot serve anything; the message names the variable at fault. */
export class ModelRepositoryError extends Error {}

/**
 * The catalog a process serves: the repository read for the models asked for. Throws
 * ModelRepositoryError, naming MODEL_REPOSITORY (and where the list of models came from), when
 * the folder cannot be read or none of the models asked for loads.
 */
export async function loadServedCatalog(
  repository: string,
  models: readonly string[] | undefined,
  /** How the caller names the list of models: the variable, or a command-line option. */
  modelsFrom = "MODELS",
): Promise<ModelCatalog> {
  const where = `MODEL_REPOSITORY=${JSON.stringify(repository)}`;
  let catalog: ModelCatalog;
  try {
    catalog = await ModelCatalog.load(repository, models);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ModelRepositoryError(`${where}: cannot read it (${code ?? (err as Error).message})`);
  }
  if (catalog.names().length === 0) {
    const among = models ? ` among ${modelsFrom}=${models.join(",")}` : "";
    throw new ModelRepositoryError(`${where}: no loadable model${among}`);
  }
  return catalog;
}
