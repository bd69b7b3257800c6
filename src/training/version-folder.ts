import { randomBytes } from "node:crypto";
import { mkdir, open, rename, rm } from "node:fs/promises";
import path from "node:path";

/**
 * Writes a model version's folder whole, for a repository live workers may be scanning: the files
 * go into a temporary folder beside `dir` (hidden, and not a version number, so the catalog
 * ignores it), are flushed to disk, and the folder is renamed into place. A new version appears
 * in one rename. An existing one is renamed aside and the new one renamed in, two renames in a
 * row: a reader sees the old folder, the new one or, for the instant between them, none; never a
 * folder with some files written and others not, or old files next to new ones. Nothing is left
 * behind, whether it succeeds or fails, or is told to stop: SIGINT, SIGTERM and SIGHUP wait for
 * it to end (see holdingSignals). A SIGKILL or a power cut can still leave the hidden folders.
 */
export async function writeVersionFolder(
  dir: string,
  files: Readonly<Record<string, string | Uint8Array>>,
): Promise<void> {
  await holdingSignals(() => write(dir, files));
}

const HELD = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * Runs `fn` with the stop signals held: one that arrives meanwhile is delivered again once it
 * has ended, so a stop lands neither between the two renames (no version at all) nor before the
 * staged folder is removed. When the process has handlers of its own for it, they ran already.
 */
async function holdingSignals(fn: () => Promise<void>): Promise<void> {
  let caught: NodeJS.Signals | undefined;
  const hold = (signal: NodeJS.Signals) => {
    caught ??= signal;
  };
  for (const s of HELD) process.on(s, hold);
  try {
    await fn();
  } finally {
    for (const s of HELD) process.off(s, hold);
    if (caught !== undefined && process.listenerCount(caught) === 0) process.kill(process.pid, caught);
  }
}

async function write(dir: string, files: Readonly<Record<string, string | Uint8Array>>): Promise<void> {
  const parent = path.dirname(dir);
  const base = path.basename(dir);
  const beside = (what: string) => path.join(parent, `.${base}.${what}-${randomBytes(6).toString("hex")}`);
  await mkdir(parent, { recursive: true });
  const staged = beside("tmp");
  // Not mkdtemp: its folder is private to the owner, and workers may run as another user.
  await mkdir(staged);
  try {
    for (const [name, data] of Object.entries(files)) {
      const file = await open(path.join(staged, name), "wx");
      try {
        await file.writeFile(data);
        await file.sync();
      } finally {
        await file.close();
      }
    }
    await syncFolder(staged);
    try {
      await rename(staged, dir);
    } catch (err) {
      // The version exists (a folder with files, or a link): rename(2) does not replace those.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOTDIR" && code !== "EISDIR") throw err;
      const old = beside("old");
      await rename(dir, old);
      try {
        await rename(staged, dir);
      } catch (err2) {
        await rename(old, dir).catch(() => {});
        throw err2;
      }
      // A link is removed, not what it points to.
      await rm(old, { recursive: true, force: true });
    }
    await syncFolder(parent);
  } catch (err) {
    await rm(staged, { recursive: true, force: true });
    throw err;
  }
}

/** Flushes a folder's entries (the names in it) to disk; not every platform can, which is fine. */
async function syncFolder(dir: string): Promise<void> {
  const handle = await open(dir, "r").catch(() => undefined);
  if (!handle) return;
  try {
    await handle.sync().catch(() => {});
  } finally {
    await handle.close();
  }
}
