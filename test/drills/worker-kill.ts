import { setTimeout as sleep } from "node:timers/promises";
import { startApi } from "../../src/api/main.js";
import { testConfig, testEnv } from "../support/config.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import {
  check,
  completions,
  inFlight,
  jobStatus,
  newResult,
  runIfMain,
  settle,
  steadyLoad,
  type DrillOptions,
  type DrillResult,
} from "./support.js";

/**
 * kill -9 a worker in the middle of its batches, again and again, under steady load. Promise:
 * every accepted job completes (its lease expires and another worker runs it again), and each
 * job the killed worker had in hand completes.
 */
export async function workerKill({ short }: DrillOptions): Promise<DrillResult> {
  const r = newResult("worker kill -9 mid-batch");
  const kills = short ? 4 : 10;
  const prefix = uniquePrefix("drill-kill");
  const overrides = {
    MODELS: "echo",
    // A short lease so a killed worker's jobs come back within seconds.
    WORKER_LOCK_DURATION_MS: "2000",
    WORKER_STALLED_INTERVAL_MS: "1000",
    WORKER_MAX_STALLED_COUNT: String(kills + 5),
    WORKER_CONCURRENCY: "16",
  };
  const env = testEnv(prefix, overrides);
  const api = await startApi(testConfig(prefix, overrides));
  const workers: Spawned[] = [];
  const all: Spawned[] = [];
  const spawnOne = async () => {
    const w = await spawnWorker(env);
    workers.push(w);
    all.push(w);
  };
  try {
    for (let i = 0; i < 3; i++) await spawnOne();
    const load = steadyLoad(r, api.url, 12, (i) => ({ text: `kill drill ${prefix} ${i}`, sleep_ms: 150 }));
    const accepted = load.accepted;

    const redelivered: string[] = [];
    const recoveries: Promise<void>[] = [];
    await sleep(2000);
    for (let k = 0; k < kills; k++) {
      // The busiest worker, so the kill lands mid-batch.
      const victim = [...workers].sort((a, b) => inFlight(b).length - inFlight(a).length)[0]!;
      const held = inFlight(victim);
      const killedAt = Date.now();
      victim.kill("SIGKILL");
      await victim.exited;
      workers.splice(workers.indexOf(victim), 1);
      redelivered.push(...held);
      recoveries.push(
        (async () => {
          // Recovery: until every job the killed worker held has completed elsewhere.
          let open = [...held];
          while (open.length > 0 && Date.now() - killedAt < 60_000) {
            const states = await Promise.all(open.map((id) => jobStatus(api.url, id)));
            open = open.filter((_, i) => states[i] !== "completed");
            if (open.length > 0) await sleep(100);
          }
          r.maxRecoveryMs = Math.max(r.maxRecoveryMs, Date.now() - killedAt);
        })(),
      );
      await spawnOne();
      await sleep(short ? 1500 : 2500);
    }
    await load.stop();
    await Promise.all(recoveries);

    const settled = await settle(api.url, accepted, 60_000);
    const runs = completions(all);
    r.accepted = accepted.length;
    r.completed = settled.byStatus.completed ?? 0;
    r.lost = settled.notCompleted.length;
    r.duplicated = [...runs.values()].filter((n) => n > 1).length;
    const redeliveredDone = redelivered.filter((id) => !settled.notCompleted.includes(id)).length;
    check(r, r.accepted > 200, `load was real: ${r.accepted} jobs accepted`);
    check(r, r.lost === 0, `0 accepted jobs lost (${JSON.stringify(settled.byStatus)})`);
    check(r, redelivered.length > 0, `${kills} kills caught ${redelivered.length} jobs in a worker's hands`);
    check(
      r,
      redeliveredDone === redelivered.length,
      `each redelivered job completed (${redeliveredDone}/${redelivered.length})`,
    );
    check(r, r.errors5xx === 0, `0 5xx answers (${r.errors5xx})`);
    r.notes.push(
      `duplicated = jobs stored as completed twice (job_completed is logged once the completion is stored; a job a killed worker finished but had not yet acknowledged runs again elsewhere: at-least-once, handlers must be idempotent)`,
      `max recovery = kill until every job the killed worker held had completed elsewhere (lease ${overrides.WORKER_LOCK_DURATION_MS} ms)`,
    );
  } finally {
    await Promise.all(workers.map((w) => stop(w)));
    await api.close();
    await cleanupPrefix(prefix);
  }
  return r;
}

runIfMain(import.meta, workerKill);
