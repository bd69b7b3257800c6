// `npm run bench [-- <scenario...>] [-- --quick]`: runs benchmark scenarios side by side, prints
// each one's tables and writes bench/results/<scenario>.json with the machine it ran on.
import { execSync } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { formatTable, type BenchContext, type Scenario } from "./lib.js";
import { closePools } from "./support/http.js";
import { redisVersion } from "./support/redis.js";

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
  redis: await redisVersion(ctx.redisUrl),
};
// The machine may be shared: the 1-minute load average before and after each scenario says how busy.
const load1 = () => Math.round(loadavg()[0]! * 100) / 100;
mkdirSync(path.join(HERE, "results"), { recursive: true });
const failed: string[] = [];
for (const name of selected) {
  const mod = (await import(pathToFileURL(path.join(HERE, "scenarios", `${name}.ts`)).href)) as {
    run: Scenario;
  };
  console.log(`\n## ${name}${quick ? " (quick)" : ""}\n`);
  const t0 = Date.now();
  const loadStart = load1();
  let result: Awaited<ReturnType<Scenario>>;
  try {
    result = await mod.run(ctx);
  } catch (err) {
    // One broken scenario must not hide the others' numbers; the exit code still says it.
    console.error(`scenario ${name} failed:`, err);
    failed.push(name);
    continue;
  } finally {
    // Each scenario's API listens on a port of its own: drop the connections to it.
    await closePools();
  }
  for (const t of result.tables) console.log(formatTable(t) + "\n");
  const out = {
    scenario: name,
    quick,
    date: new Date().toISOString(),
    duration_s: Math.round((Date.now() - t0) / 1000),
    commit: gitCommit(),
    machine,
    load_average_1m: { start: loadStart, end: load1() },
    command: `npm run bench -- ${name}${quick ? " --quick" : ""}`,
    invoked_as: `npm run bench${args.length > 0 ? ` -- ${args.join(" ")}` : ""}`,
    tables: result.tables,
    data: result.data,
  };
  const file = path.join(HERE, "results", `${name}${quick ? ".quick" : ""}.json`);
  writeFileSync(file, JSON.stringify(out, null, 2) + "\n");
  console.log(`wrote ${path.relative(process.cwd(), file)} (${out.duration_s} s)`);
}
if (failed.length > 0) console.error(`failed: ${failed.join(", ")}`);
process.exit(failed.length > 0 ? 1 : 0);
