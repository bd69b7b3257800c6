import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { ModelNotFoundError, VersionNotFoundError } from "../errors/catalog.js";
import { manifestSchema } from "./manifest.js";
import { parseOnnxSection } from "./onnx/postprocess.js";
import { featureSchema, parsePreprocessing } from "./preprocess/index.js";
import type { ModelDescriptor } from "./types.js";
import { assertCompilableSchema } from "./validation.js";

export interface CatalogProblem {
  readonly path: string;
  readonly message: string;
}

/**
 * The model repository on disk: `<dir>/<name>/<version>/manifest.json`. A version whose
 * manifest is broken is left out and reported in `problems`; the others still serve.
 */
export class ModelCatalog {
  private constructor(
    private byName: ReadonlyMap<string, readonly ModelDescriptor[]>,
    private problemList: readonly CatalogProblem[],
  ) {}

  /** The models served before the first reload: the only ones a reload serves. */
  private founders: ReadonlySet<string> | undefined;

  get problems(): readonly CatalogProblem[] {
    return this.problemList;
  }

  /**
   * Serves `next`'s versions from now on. The catalog object is shared by everything that was
   * given it (routes, validator, model pool), so a reload swaps the contents, not the object.
   */
  adopt(next: ModelCatalog): void {
    // A reload serves new versions of the models served from the start, not new models: their
    // queues and workers are set up when a process starts. A new one waits for a restart.
    const founders = (this.founders ??= new Set(this.byName.keys()));
    const byName = new Map(next.byName);
    const problems = [...next.problemList];
    for (const [name, versions] of next.byName) {
      if (founders.has(name)) continue;
      byName.delete(name);
      problems.push({
        path: path.dirname(versions[0]!.dir),
        message: `${name} is a new model: it is served once the API and workers restart (a reload serves new versions of the models already served)`,
      });
    }
    this.byName = byName;
    this.problemList = problems;
  }

  /** A copy without one version (one that failed to load), which is reported as a problem. */
  without(name: string, version: string, reason: string): ModelCatalog {
    const byName = new Map(this.byName);
    const left = (byName.get(name) ?? []).filter((d) => d.version !== version);
    const dropped = this.byName.get(name)?.find((d) => d.version === version);
    if (left.length > 0) byName.set(name, left);
    else byName.delete(name);
    return new ModelCatalog(byName, [
      ...this.problemList,
      { path: dropped?.dir ?? `${name}/${version}`, message: reason },
    ]);
  }

  static async load(dir: string, only?: readonly string[]): Promise<ModelCatalog> {
    const problems: CatalogProblem[] = [];
    const byName = new Map<string, ModelDescriptor[]>();
    const names = (await subdirectories(dir))
      .filter((n) => !n.startsWith("."))
      .filter((n) => !only || only.includes(n))
      .sort();
    for (const name of names) {
      const versions: ModelDescriptor[] = [];
      // A folder removed or renamed while the repository is read is simply not there: models are
      // replaced by renames, and a rescan may fall between two of them.
      const subfolders = (await subdirectories(path.join(dir, name)).catch(ifGone([]))).filter(
        (v) => !v.startsWith("."),
      );
      const versionDirs = subfolders.filter((v) => /^[0-9]+$/.test(v));
      // Hidden folders are for staging (training writes a version there first); any other is a
      // version misnamed ("v2"), which would otherwise be ignored without a word.
      for (const v of subfolders.filter((v) => !versionDirs.includes(v)))
        problems.push({
          path: path.join(dir, name, v),
          message: "not a version folder: versions are folders named by positive integers (1, 2, ...)",
        });
      for (const v of versionDirs) {
        const vdir = path.join(dir, name, v);
        // Gone: skipped. Back already (a replacement renamed in): read once more.
        const read = () => readDescriptor(vdir, name, v);
        try {
          versions.push(
            await read().catch(async (err: unknown) => ((await exists(vdir)) ? read() : gone(err))),
          );
        } catch (err) {
          if (err instanceof Gone) continue;
          problems.push({ path: vdir, message: (err as Error).message });
        }
      }
      if (versions.length > 0)
        byName.set(
          name,
          versions.sort((a, b) => Number(b.version) - Number(a.version)),
        );
    }
    for (const wanted of only ?? []) {
      if (!byName.has(wanted))
        problems.push({ path: path.join(dir, wanted), message: "no loadable version" });
    }
    return new ModelCatalog(byName, problems);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** Whether `version` of model `name` is in the catalog. */
  hasVersion(name: string, version: string): boolean {
    return this.byName.get(name)?.some((d) => d.version === version) ?? false;
  }

  /** Versions of a model, newest first. */
  versions(name: string): readonly ModelDescriptor[] {
    const list = this.byName.get(name);
    if (!list) throw new ModelNotFoundError(name, this.names());
    return list;
  }

  /** The named version, or the latest one. */
  resolve(name: string, version?: string): ModelDescriptor {
    const list = this.versions(name);
    if (version === undefined) return list[0]!;
    const found = list.find((d) => d.version === version);
    if (!found)
      throw new VersionNotFoundError(
        name,
        version,
        list.map((d) => d.version),
      );
    return found;
  }

  all(): ModelDescriptor[] {
    return [...this.byName.values()].flat();
  }
}

/** A fallback for a folder that vanished (ENOENT, or ENOTDIR once a link points elsewhere). */
function ifGone<T>(fallback: T): (err: unknown) => T {
  return (err) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return fallback;
    throw err;
  };
}

class Gone extends Error {}
function gone(err: unknown): never {
  throw new Gone("folder removed while read", { cause: err });
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** Names of the folders in `dir`, symbolic links to folders included (versions are often links). */
async function subdirectories(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const found: string[] = [];
  for (const d of entries) {
    if (d.isDirectory()) found.push(d.name);
    else if (d.isSymbolicLink()) {
      const target = await stat(path.join(dir, d.name)).catch(() => undefined);
      if (target?.isDirectory()) found.push(d.name);
    }
  }
  return found;
}

export async function readDescriptor(dir: string, name: string, version: string): Promise<ModelDescriptor> {
  let text: string;
  let raw: unknown;
  try {
    text = await readFile(path.join(dir, "manifest.json"), "utf8");
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`manifest.json unreadable: ${(err as Error).message}`, { cause: err });
  }
  const descriptor = descriptorFrom(raw, dir, name, version);
  return Object.freeze({ ...descriptor, fingerprint: await fingerprint(text, descriptor) });
}

/**
 * The manifest's bytes and the model file's size, hashed: what tells a version rewritten in
 * place from what it held before (`inferline train` writes a new `trained_at`) without reading a
 * model file of gigabytes. Not its modification time: copies of one repository on other hosts,
 * or made without keeping times, must agree, or workers would never cache what APIs look up.
 */
async function fingerprint(manifest: string, d: ModelDescriptor): Promise<string> {
  const file = typeof d.manifest.file === "string" ? path.join(d.dir, d.manifest.file) : undefined;
  const info = file === undefined ? undefined : await stat(file).catch(() => undefined);
  return createHash("sha256")
    .update(manifest)
    .update(`\0${info?.size ?? "-"}`)
    .digest("hex")
    .slice(0, 16);
}

/**
 * What a worker or an API makes of the manifest `raw` of `<name>/<version>` in `dir`, or an error
 * naming the first field it refuses. `inferline train` asks it of a manifest before writing one.
 */
export function descriptorFrom(raw: unknown, dir: string, name: string, version: string): ModelDescriptor {
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new Error(`manifest.json invalid at ${first?.path.join(".") || "(root)"}: ${first?.message}`);
  }
  const m = parsed.data;
  if (m.name !== name || m.version !== version) {
    throw new Error(`manifest.json says ${m.name}/${m.version} but lives in ${name}/${version}`);
  }
  try {
    assertCompilableSchema(m.input);
  } catch (err) {
    throw new Error(`manifest.json invalid at input: ${(err as Error).message}`, { cause: err });
  }
  let features: Record<string, unknown> | undefined;
  if (m.kind === "onnx") {
    try {
      features = featureSchema(parsePreprocessing(m.preprocessing));
      parseOnnxSection(m.onnx);
      // What the preprocessing asks of an input must compile too, or every request would fail.
      assertCompilableSchema(features);
    } catch (err) {
      throw new Error(`manifest.json invalid at ${(err as Error).message}`, { cause: err });
    }
  }
  return Object.freeze({
    name: m.name,
    version: m.version,
    description: m.description,
    kind: m.kind,
    inputSchema: m.input,
    featureSchema: features,
    task: m.output.task,
    labels: m.output.labels,
    batching: m.batching,
    cacheTtlSeconds: m.cache.ttlSeconds,
    maxQueueDepth: m.limits?.maxQueueDepth,
    training: m.training,
    fingerprint: "",
    dir,
    manifest: raw as Record<string, unknown>,
  });
}
