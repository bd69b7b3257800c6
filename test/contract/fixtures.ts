import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ROOT } from "../support/processes.js";

/**
 * A model repository of the test's own: sentiment, plus the diagnostics model under other names
 * with manifest changes (a cache TTL, a queue cap).
 */
export function makeRepository(variants: Record<string, Record<string, unknown>>): {
  dir: string;
  remove(): void;
} {
  const dir = mkdtempSync(path.join(tmpdir(), "inferline-contract-"));
  cpSync(path.join(ROOT, "models", "sentiment"), path.join(dir, "sentiment"), { recursive: true });
  const echo = JSON.parse(
    readFileSync(path.join(ROOT, "models", "echo", "1", "manifest.json"), "utf8"),
  ) as Record<string, unknown>;
  for (const [name, changes] of Object.entries(variants)) {
    cpSync(path.join(ROOT, "models", "echo"), path.join(dir, name), { recursive: true });
    writeFileSync(
      path.join(dir, name, "1", "manifest.json"),
      JSON.stringify({ ...echo, name, ...changes }, null, 2),
    );
  }
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
