// `npm run bench [-- <scenario...>] [-- --quick]`: runs benchmark scenarios side by side, prints
// each one's tables and writes bench/results/<scenario>.json with the machine it ran on.
import { execSync } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { BenchContext, BenchTable, Scenario } from "./lib.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const wanted = args.filter((a) => !a.startsWith("--"));
const available = readdirSync(path.join(HERE, "scenarios"))
  .filter((f) => f.endsWith(".ts"))
  .map((f) => f.replace(/\.ts$/, ""))
  .sort();
const unknown = wanted.filter((w) => !available.includes(w));
if (unknown.length > 0) {
  console.error(`unknown scenario(s): ${unknown.join(", ")}; available: ${available.join(", ")}`);
  process.exit(2);
}
const selected = wanted.length > 0 ? wanted : available;

export function formatTable(t: BenchTable): string {
  const cells = [
    t.columns.map(String),
    ...t.rows.map((r) => r.map((c) => (typeof c === "number" ? fmt(c) : c))),
  ];
  const widths = t.columns.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? "").length)));
  const line = (r: readonly string[]) =>
    "| " + r.map((c, i) => String(c).padEnd(widths[i]!)).join(" | ") + " |";
  return [
    `### ${t.title}`,
    "",
    line(cells[0]!),
    "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|",
    ...cells.slice(1).map(line),
  ].join("\n");
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2);
}

const tty = process.stderr.isTTY;
let lastPrint = 0;
const ctx: BenchContext = {
  quick,
  redisUrl: process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379",
  progress(label, done, total) {
    const now = Date.now();
    if (done < total && now - lastPrint < (tty ? 100 : 5000)) return;
    lastPrint = now;
    const width = 30;
    const filled = Math.round((done / Math.max(1, total)) * width);
    const bar = `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total} ${label}`;
    process.stderr.write(tty ? `\r${bar}\x1b[K${done >= total ? "\n" : ""}` : `${bar}\n`);
  },
};

function gitCommit(): string {
  try {
    return execSync("git rev-parse --short HEAD", { encoding: "utf8" }).trim();
  } catch {
    return "unknown";
  }
}

const machine = {
  cpus: cpus().length,
  cpu_model: cpus()[0]?.model ?? "unknown",
  memory_gib: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  platform: `${process.platform}-${process.arch}`,
};
mkdirSync(path.join(HERE, "results"), { recursive: true });
for (const name of selected) {
  const mod = (await import(pathToFileURL(path.join(HERE, "scenarios", `${name}.ts`)).href)) as {
    run: Scenario;
  };
  console.log(`\n## ${name}${quick ? " (quick)" : ""}\n`);
  const t0 = Date.now();
  const result = await mod.run(ctx);
  for (const t of result.tables) console.log(formatTable(t) + "\n");
  const out = {
    scenario: name,
    quick,
    date: new Date().toISOString(),
    duration_s: Math.round((Date.now() - t0) / 1000),
    commit: gitCommit(),
    machine,
    command: `npm run bench -- ${name}${quick ? " --quick" : ""}`,
    tables: result.tables,
    data: result.data,
  };
  const file = path.join(HERE, "results", `${name}${quick ? ".quick" : ""}.json`);
  writeFileSync(file, JSON.stringify(out, null, 2) + "\n");
  console.log(`wrote ${path.relative(process.cwd(), file)} (${out.duration_s} s)`);
}
process.exit(0);
