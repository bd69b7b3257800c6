import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { testEnv } from "../support/config.js";
import { spawnCli, spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, REDIS_URL, uniquePrefix } from "../support/redis.js";
import {
  check,
  completions,
  loop,
  newResult,
  runIfMain,
  submit,
  type DrillOptions,
  type DrillResult,
} from "./support.js";

function rssBytes(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m?.[1] ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

interface Finished {
  status: string;
  timings?: { total_ms: number };
}

/**
 * Offer three times the measured capacity. Promises: admitted jobs complete within their
 * deadline; the rest get 429 with Retry-After; queue length and API memory stay bounded.
 */
export async function overload({ short }: DrillOptions): Promise<DrillResult> {
  const r = newResult("overload at 3x capacity");
  const prefix = uniquePrefix("drill-over");
  const seconds = short ? 15 : 60;
  const deadlineMs = 20_000;
  const maxDepth = 200;
  const env = testEnv(prefix, {
    MODELS: "echo",
    LOG_LEVEL: "info",
    // A small worker so that capacity, not the load generator, is the limit.
    WORKER_CONCURRENCY: "4",
    QUEUE_MAX_DEPTH: String(maxDepth),
    WAIT_MAX_SECONDS: "10",
  });
  const api = spawnCli(["api"], env);
  const workers: Spawned[] = [];
  const redis = new Redis(REDIS_URL);
  try {
    const base = String((await api.waitForLine((l) => l.event === "api_started", 30_000)).url);
    workers.push(await spawnWorker(env));
    const input = (i: number) => ({ text: `overload ${prefix} ${i}`, sleep_ms: 40 });

    // 1. Capacity: a closed loop waiting for each result.
    let done = 0;
    const measureUntil = Date.now() + (short ? 4000 : 10_000);
    const t0 = Date.now();
    await loop(
      16,
      () => Date.now() > measureUntil,
      async (i) => {
        const res = await submit(base, input(i), { prefer: "wait=10" });
        if (res.status === 200) done++;
      },
    );
    const capacity = done / ((Date.now() - t0) / 1000);
    const rate = capacity * 3;
    await sleep(1000);

    // 2. Open loop at 3x: requests arrive on a clock, whatever the answers.
    const admitted: { id: string; at: number }[] = [];
    const statuses: Record<string, number> = {};
    let noRetryAfter = 0;
    let maxQueue = 0;
    let maxRss = 0;
    const rssStart = rssBytes(api.proc.pid);
    let inFlight = 0;
    let skipped = 0;
    let sent = 0;
    const started = Date.now();
    const sampler = setInterval(() => {
      maxRss = Math.max(maxRss, rssBytes(api.proc.pid));
      void Promise.all([
        redis.llen(`${prefix}:{echo}:wait`),
        redis.zcard(`${prefix}:{echo}:prioritized`),
      ]).then(
        ([a, b]) => (maxQueue = Math.max(maxQueue, a + b)),
        () => {},
      );
    }, 250);
    const pending: Promise<void>[] = [];
    while (Date.now() - started < seconds * 1000) {
      const due = Math.floor(((Date.now() - started) / 1000) * rate);
      while (sent < due) {
        if (inFlight >= 400) {
          skipped++;
          sent++;
          continue;
        }
        const i = sent++;
        inFlight++;
        pending.push(
          submit(base, input(100_000 + i), {}, `?timeout_ms=${deadlineMs}`)
            .then((res) => {
              statuses[res.status] = (statuses[res.status] ?? 0) + 1;
              if (res.id) admitted.push({ id: res.id, at: Date.now() });
              if (res.status === 429 && !res.retryAfter) noRetryAfter++;
              if (res.status >= 500) r.errors5xx++;
            })
            .catch(() => {
              statuses.error = (statuses.error ?? 0) + 1;
              r.errors5xx++;
            })
            .finally(() => inFlight--),
        );
      }
      await sleep(10);
    }
    await Promise.all(pending);
    clearInterval(sampler);

    // 3. Every admitted job completes, within its deadline.
    let late = 0;
    const notCompleted: Record<string, number> = {};
    const settleBy = Date.now() + 60_000;
    const queue = [...admitted];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let job = queue.pop(); job !== undefined; job = queue.pop()) {
          for (;;) {
            // Long-polls; `expired` means the deadline passed before a worker started it.
            const res = await fetch(`${base}/api/results/${job.id}`, { headers: { prefer: "wait=5" } });
            const view = (await res.json()) as Finished;
            if (view.status === "queued" || view.status === "active") {
              if (Date.now() < settleBy) continue;
            }
            if (view.status === "completed") {
              r.completed++;
              if ((view.timings?.total_ms ?? 0) > deadlineMs) late++;
            } else notCompleted[view.status] = (notCompleted[view.status] ?? 0) + 1;
            break;
          }
        }
      }),
    );
    r.accepted = admitted.length;
    r.lost = admitted.length - r.completed;
    r.duplicated = [...completions(workers).values()].filter((n) => n > 1).length;
    const refused = statuses["429"] ?? 0;
    check(
      r,
      capacity > 5,
      `measured capacity ${capacity.toFixed(0)} jobs/s; offered ${rate.toFixed(0)}/s for ${seconds} s`,
    );
    check(
      r,
      refused > 0 && refused > r.accepted / 10,
      `the excess was refused: ${refused} x 429 vs ${r.accepted} admitted (${JSON.stringify(statuses)})`,
    );
    check(r, noRetryAfter === 0, `every 429 carried Retry-After (${noRetryAfter} did not)`);
    check(r, r.lost === 0, `every admitted job completed (${JSON.stringify(notCompleted)})`);
    check(r, late === 0, `within the ${deadlineMs / 1000} s deadline (${late} late)`);
    // Admission counts the jobs admitted but not yet added: one API process holds the cap exactly.
    check(r, maxQueue <= maxDepth, `queue length stayed within the cap: max ${maxQueue} (cap ${maxDepth})`);
    check(
      r,
      maxRss < rssStart + 256 * 1024 * 1024,
      `API memory stayed bounded: ${(rssStart / 2 ** 20).toFixed(0)} -> max ${(maxRss / 2 ** 20).toFixed(0)} MiB`,
    );
    check(r, r.errors5xx === 0, `0 5xx answers or failed connections (${r.errors5xx})`);
    if (skipped > 0)
      r.notes.push(`${skipped} arrivals skipped by the load generator (400 requests already in flight)`);
    r.notes.push(`accepted = admitted with 202; QUEUE_MAX_DEPTH ${maxDepth}; max recovery not applicable`);
  } finally {
    redis.disconnect();
    await Promise.all(workers.map((w) => stop(w)));
    await stop(api);
    await cleanupPrefix(prefix);
  }
  return r;
}

runIfMain(import.meta, overload);
