import { execSync } from "node:child_process";
import { readFileSync } from "node:fs";

let ticksPerSecond: number | undefined;
function clkTck(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execSync("getconf CLK_TCK", { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start at field 3 (state).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / clkTck();
}

/** Resident set size of a process in bytes, from /proc/<pid>/status (VmRSS). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) * 1024;
}

/** CPU use of a set of processes over an interval: call `stop()` to get percent of one core each. */
export function cpuMeter(pids: Record<string, number>) {
  const t0 = performance.now();
  const start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]));
  return {
    stop(): Record<string, number> {
      const wall = (performance.now() - t0) / 1000;
      return Object.fromEntries(
        Object.entries(pids).map(([k, pid]) => [k, ((cpuSeconds(pid) - start[k]!) / wall) * 100]),
      );
    },
  };
}

/**
 * Runs `loop` (which completes `total` jobs) and charges each process the CPU it used meanwhile,
 * in ms per job; `client` is this process. On a saturated box throughput is cores / their sum.
 */
export async function meterCpu<T>(
  pids: Record<string, number | undefined>,
  total: number,
  loop: () => Promise<T>,
): Promise<{ result: T; cpu: Record<string, number> }> {
  const known = Object.entries(pids).filter((e): e is [string, number] => e[1] !== undefined);
  const before = known.map(([, pid]) => cpuSeconds(pid));
  const self = process.cpuUsage();
  const result = await loop();
  const used = process.cpuUsage(self);
  const cpu: Record<string, number> = { client: (used.user + used.system) / 1000 / total };
  known.forEach(([name, pid], i) => (cpu[name] = ((cpuSeconds(pid) - before[i]!) * 1000) / total));
  return { result, cpu };
}
