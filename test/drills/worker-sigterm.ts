import { setTimeout as sleep } from "node:timers/promises";
import { startApi } from "../../src/api/main.js";
import { testConfig, testEnv } from "../support/config.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import {
  check,
  completions,
  inFlight,
  newResult,
  runIfMain,
  settle,
  steadyLoad,
  type DrillOptions,
  type DrillResult,
} from "./support.js";

/**
 * SIGTERM every worker at once under load (a deploy), then start new ones. Promises: each old
 * worker finishes the jobs in its hands and exits 0; no job is lost; none runs twice to completion.
 */
export async function workerSigterm({ short }: DrillOptions): Promise<DrillResult> {
  const r = newResult("SIGTERM all workers, then new ones");
  const prefix = uniquePrefix("drill-term");
  const overrides = { MODELS: "echo", WORKER_CONCURRENCY: "16", WORKER_SHUTDOWN_TIMEOUT_MS: "30000" };
  const env = testEnv(prefix, overrides);
  const api = await startApi(testConfig(prefix, overrides));
  const all: Spawned[] = [];
  try {
    const old: Spawned[] = [];
    for (let i = 0; i < 3; i++) old.push(await spawnWorker(env));
    all.push(...old);
    const load = steadyLoad(r, api.url, 12, (i) => ({ text: `sigterm drill ${prefix} ${i}`, sleep_ms: 200 }));
    const accepted = load.accepted;
    await sleep(short ? 3000 : 10_000);

    const held = old.flatMap((w) => inFlight(w));
    const termAt = Date.now();
    for (const w of old) w.kill("SIGTERM");
    const exits = await Promise.all(old.map((w) => w.exited));
    const drained = Date.now() - termAt;
    const fresh = await Promise.all([0, 1, 2].map(() => spawnWorker(env)));
    all.push(...fresh);
    const firstNew = await Promise.race(
      fresh.map((w) => w.waitForLine((l) => l.event === "job_completed", 60_000).then(() => Date.now())),
    );
    r.maxRecoveryMs = firstNew - termAt;
    await sleep(short ? 3000 : 10_000);
    await load.stop();

    const settled = await settle(api.url, accepted, 60_000);
    const runs = completions(all);
    r.accepted = accepted.length;
    r.completed = settled.byStatus.completed ?? 0;
    r.lost = settled.notCompleted.length;
    r.duplicated = [...runs.values()].filter((n) => n > 1).length;
    const finishedByOld = held.filter((id) =>
      old.some((w) => w.lines.some((l) => l.event === "job_completed" && l.job_id === id)),
    );
    const drainedAll = old.every((w) =>
      w.lines.some((l) => l.event === "worker_stopped" && l.drained === true),
    );
    check(r, r.accepted > 200, `load was real: ${r.accepted} jobs accepted`);
    check(
      r,
      exits.every((e) => e.code === 0),
      `every old worker exited 0 after draining (${drained} ms; ${JSON.stringify(exits.map((e) => e.code ?? e.signal))})`,
    );
    check(r, r.lost === 0, `0 accepted jobs lost (${JSON.stringify(settled.byStatus)})`);
    check(r, r.duplicated === 0, `0 jobs run twice to completion (${r.duplicated})`);
    check(r, drainedAll, "every old worker reports it drained the jobs in its hands");
    check(r, r.errors5xx === 0, `0 5xx answers (${r.errors5xx})`);
    r.notes.push(
      `jobs in the old workers' hands at SIGTERM: ${held.length}, finished by them before exiting: ${finishedByOld.length}`,
      "max recovery = SIGTERM until a new worker completed a job (old workers drain first, then new ones start)",
    );
  } finally {
    await Promise.all(all.map((w) => stop(w)));
    await api.close();
    await cleanupPrefix(prefix);
  }
  return r;
}

runIfMain(import.meta, workerSigterm);
