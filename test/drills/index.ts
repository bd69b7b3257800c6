import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { broken, report, RESULT_MARK, table, type DrillResult } from "./support.js";

/**
 * Runs every drill, each in a process of its own (a drill that crashes or leaks handles cannot
 * disturb the next), then prints one table. `--short` is the CI form. Exits 1 when a promise
 * was broken, 2 when a drill could not run. Usage: npm run drills [-- --short] [-- name...]
 */
const DRILLS = ["worker-kill", "worker-sigterm", "redis-restart", "api-kill", "hostile-input", "overload"];
const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const short = args.includes("--short");
const only = args.filter((a) => !a.startsWith("--"));
const selected = only.length > 0 ? DRILLS.filter((d) => only.includes(d)) : DRILLS;

function runOne(name: string): Promise<{ result?: DrillResult; code: number | null; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", path.join(here, `${name}.ts`), ...(short ? ["--short"] : [])],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
    child.on("exit", (code) => {
      const line = out.split("\n").find((l) => l.startsWith(RESULT_MARK));
      const result = line ? (JSON.parse(line.slice(RESULT_MARK.length)) as DrillResult) : undefined;
      resolve({ result, code, ms: Date.now() - started });
    });
  });
}

const results: DrillResult[] = [];
let failedToRun = 0;
for (const name of selected) {
  process.stdout.write(`drill ${name}${short ? " (short)" : ""} ...\n`);
  const { result, code, ms } = await runOne(name);
  if (!result) {
    failedToRun++;
    process.stdout.write(`  could not run (exit ${code})\n`);
    continue;
  }
  results.push(result);
  process.stdout.write(`${report(result)}\n  (${(ms / 1000).toFixed(0)} s)\n`);
}
process.stdout.write(`\n${table(results)}\n`);
const brokenCount = results.reduce((n, r) => n + broken(r).length, 0);
if (brokenCount > 0) process.stdout.write(`\n${brokenCount} promise(s) broken\n`);
process.exit(failedToRun > 0 ? 2 : brokenCount > 0 ? 1 : 0);
