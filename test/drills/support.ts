import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import type { Spawned } from "../support/processes.js";

/** What a drill measured, and the promises it checked. */
export interface DrillResult {
  readonly name: string;
  accepted: number;
  completed: number;
  lost: number;
  duplicated: number;
  errors5xx: number;
  /** Longest time from a fault until the service did its job again (ms; meaning per drill). */
  maxRecoveryMs: number;
  readonly checks: { ok: boolean; text: string }[];
  readonly notes: string[];
}

export interface DrillOptions {
  /** CI form: fewer faults, shorter load. */
  readonly short: boolean;
}

export function newResult(name: string): DrillResult {
  return {
    name,
    accepted: 0,
    completed: 0,
    lost: 0,
    duplicated: 0,
    errors5xx: 0,
    maxRecoveryMs: 0,
    checks: [],
    notes: [],
  };
}

export function check(r: DrillResult, ok: boolean, text: string): void {
  r.checks.push({ ok, text });
}

export const broken = (r: DrillResult) => r.checks.filter((c) => !c.ok);

export function table(results: readonly DrillResult[]): string {
  const head = ["drill", "accepted", "completed", "lost", "duplicated", "5xx", "max recovery", "promises"];
  const rows = results.map((r) => [
    r.name,
    String(r.accepted),
    String(r.completed),
    String(r.lost),
    String(r.duplicated),
    String(r.errors5xx),
    r.maxRecoveryMs > 0 ? `${(r.maxRecoveryMs / 1000).toFixed(2)} s` : "-",
    broken(r).length === 0 ? "kept" : `BROKEN (${broken(r).length})`,
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(width[i]!)).join(" | ")} |`;
  return [line(head), `|${width.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)].join("\n");
}

export function report(r: DrillResult): string {
  return [
    ...r.checks.map((c) => `  ${c.ok ? "ok  " : "FAIL"} ${c.text}`),
    ...r.notes.map((n) => `  note ${n}`),
  ].join("\n");
}

/** Marker line the runner reads a child drill's result from. */
export const RESULT_MARK = "DRILL_RESULT ";

/**
 * Runs `drill` when its file is executed directly (`npx tsx test/drills/<name>.ts [--short]`):
 * prints the table and each check, and exits 1 when a promise was broken.
 */
export function runIfMain(meta: ImportMeta, drill: (o: DrillOptions) => Promise<DrillResult>): void {
  if (process.argv[1] === undefined || meta.url !== pathToFileURL(process.argv[1]).href) return;
  const short = process.argv.includes("--short");
  drill({ short }).then(
    (r) => {
      process.stdout.write(`\n${table([r])}\n${report(r)}\n${RESULT_MARK}${JSON.stringify(r)}\n`);
      process.exit(broken(r).length === 0 ? 0 : 1);
    },
    (err: unknown) => {
      process.stderr.write(`drill failed to run: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(2);
    },
  );
}

/** Counts `job_completed` log lines per job id over worker processes (runs to completion). */
export function completions(workers: readonly Spawned[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const w of workers) {
    for (const l of w.lines) {
      if (l.event === "job_completed" && typeof l.job_id === "string") {
        counts.set(l.job_id, (counts.get(l.job_id) ?? 0) + 1);
      }
    }
  }
  return counts;
}

/** Jobs a worker had started but (as far as its log shows) not finished. */
export function inFlight(worker: Spawned): string[] {
  const open = new Set<string>();
  for (const l of worker.lines) {
    if (typeof l.job_id !== "string") continue;
    if (l.event === "job_started") open.add(l.job_id);
    else if (l.event === "job_completed" || l.event === "job_failed") open.delete(l.job_id);
  }
  return [...open];
}

export interface Settled {
  readonly byStatus: Record<string, number>;
  readonly notCompleted: string[];
}

/**
 * Polls every accepted job until it is terminal. A backlog the workers are still working through
 * is slow, not lost: polling goes on while jobs keep finishing, and gives up once `stallMs` pass
 * without any finishing (or after ten minutes in all). A job still queued/active then, unknown
 * (404) or failed counts as not completed.
 */
export async function settle(
  base: string,
  ids: readonly string[],
  stallMs: number,
  headers: Record<string, string> = {},
): Promise<Settled> {
  const cap = Date.now() + 600_000;
  let deadline = Date.now() + stallMs;
  const final = new Map<string, string>();
  let pending = [...ids];
  while (pending.length > 0 && Date.now() < Math.min(deadline, cap)) {
    const next: string[] = [];
    const queue = [...pending];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let id = queue.pop(); id !== undefined; id = queue.pop()) {
          const status = await jobStatus(base, id, headers);
          if (status === "queued" || status === "active" || status === "unreachable") next.push(id);
          else final.set(id, status);
        }
      }),
    );
    if (next.length < pending.length) deadline = Date.now() + stallMs;
    pending = next;
    if (pending.length > 0) await sleep(250);
  }
  for (const id of pending) final.set(id, "unfinished");
  const byStatus: Record<string, number> = {};
  const notCompleted: string[] = [];
  for (const [id, s] of final) {
    byStatus[s] = (byStatus[s] ?? 0) + 1;
    if (s !== "completed") notCompleted.push(id);
  }
  return { byStatus, notCompleted };
}

export async function jobStatus(
  base: string,
  id: string,
  headers: Record<string, string> = {},
): Promise<string> {
  try {
    const res = await fetch(`${base}/api/results/${id}`, { headers });
    if (res.status === 404) return "unknown";
    if (res.status >= 500) {
      await res.arrayBuffer();
      return "unreachable";
    }
    return ((await res.json()) as { status: string }).status;
  } catch {
    return "unreachable";
  }
}

/** Submits one echo job; resolves with the HTTP status and the job id when accepted. */
export async function submit(
  base: string,
  input: Record<string, unknown>,
  headers: Record<string, string> = {},
  query = "",
): Promise<{ status: number; id?: string; retryAfter?: string | null; code?: string }> {
  const res = await fetch(`${base}/api/ml/echo${query}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(input),
  });
  const text = await res.text();
  let body: { job_id?: string; error?: { code?: string } } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    /* non-JSON: reported by the caller through status */
  }
  return {
    status: res.status,
    id: res.status === 202 || res.status === 200 ? body.job_id : undefined,
    retryAfter: res.headers.get("retry-after"),
    code: body.error?.code,
  };
}

/** A closed-loop client: `concurrency` callers repeat `step` until `stop()` returns true. */
export async function loop(
  concurrency: number,
  stop: () => boolean,
  step: (i: number) => Promise<void>,
): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (!stop()) await step(i++);
    }),
  );
}

/**
 * Steady load: `concurrency` callers submit `input(i)` back to back until `stop()` is called.
 * Accepted job ids collect in `accepted`; 5xx answers and unreachable servers count in `r`.
 */
export function steadyLoad(
  r: DrillResult,
  url: string,
  concurrency: number,
  input: (i: number) => Record<string, unknown>,
): { accepted: string[]; stop: () => Promise<void> } {
  const accepted: string[] = [];
  let stopping = false;
  const running = loop(
    concurrency,
    () => stopping,
    async (i) => {
      const res = await submit(url, input(i)).catch(() => ({ status: 0 }) as const);
      if (res.status >= 500 || res.status === 0) r.errors5xx++;
      if ("id" in res && res.id) accepted.push(res.id);
      else await sleep(20);
    },
  );
  return {
    accepted,
    stop: async () => {
      stopping = true;
      await running;
    },
  };
}
