// Writes env.example and README.md's configuration table from the config schema, so the
// documentation of every variable (unit, default) lives in one place: src/config/env.ts.
// Usage: npx tsx scripts/config-docs.ts [--check]
import { readFileSync, writeFileSync } from "node:fs";
import { ENV_SCHEMA, PACKAGE_ROOT } from "../src/config/env.js";

interface Described {
  description?: string;
  _zod: { def: { type: string; defaultValue?: unknown; innerType?: Described; in?: Described } };
}

/** A default that depends on where the package is installed: shown, but not a value to copy. */
const PLACEHOLDER = "<package>";

function defaultOf(schema: Described): string | undefined {
  let s: Described | undefined = schema;
  while (s) {
    if (s._zod.def.type === "default") {
      const v = s._zod.def.defaultValue;
      const text = String(typeof v === "function" ? (v as () => unknown)() : v);
      return text.startsWith(PACKAGE_ROOT) ? text.replace(PACKAGE_ROOT, PLACEHOLDER) : text;
    }
    // Wrappers (optional, default) hold their schema in innerType; a transform's pipe in `in`.
    s = s._zod.def.innerType ?? s._zod.def.in;
  }
  return undefined;
}

const rows = Object.entries(ENV_SCHEMA).map(([name, schema]) => ({
  name,
  description: (schema as unknown as Described).description ?? "",
  default: defaultOf(schema as unknown as Described),
}));

const example = [
  "# Inferline configuration. Every variable is optional; the value shown is the default.",
  "# Generated from src/config/env.ts by `npx tsx scripts/config-docs.ts`.",
  "",
  ...rows.flatMap((r) => [
    `# ${r.description}`,
    // Commented out where there is no default, or where it is a placeholder: env.example copied
    // to .env as it is must configure the defaults, not a folder named "<package>".
    `${r.default === undefined || r.default.includes(PLACEHOLDER) ? "# " : ""}${r.name}=${r.default ?? ""}`,
    "",
  ]),
].join("\n");

const table = [
  "| variable | default | meaning |",
  "|---|---|---|",
  ...rows.map(
    (r) =>
      `| \`${r.name}\` | ${r.default === undefined ? "—" : `\`${r.default}\``} | ${r.description.replace(/\|/g, "\\|")} |`,
  ),
].join("\n");

const check = process.argv.includes("--check");
const readme = readFileSync("README.md", "utf8");
const start = "<!-- config:start -->";
const end = "<!-- config:end -->";
const i = readme.indexOf(start);
const j = readme.indexOf(end);
const newReadme =
  i >= 0 && j > i ? `${readme.slice(0, i + start.length)}\n${table}\n${readme.slice(j)}` : readme;
if (check) {
  const stale = readFileSync("env.example", "utf8") !== example || newReadme !== readme;
  if (stale) {
    console.error(
      "env.example or README.md's configuration table is stale: run npx tsx scripts/config-docs.ts",
    );
    process.exit(1);
  }
} else {
  writeFileSync("env.example", example);
  writeFileSync("README.md", newReadme);
}
