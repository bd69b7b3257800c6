import { setTimeout as sleep } from "node:timers/promises";
import { startApi } from "../../src/api/main.js";
import { testConfig, testEnv } from "../support/config.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import {
  check,
  completions,
  loop,
  newResult,
  runIfMain,
  settle,
  submit,
  type DrillOptions,
  type DrillResult,
} from "./support.js";
import { ownRedis } from "../support/redis.js";

/**
 * Restart Redis (its own redis-server, AOF everysec) under load. Promises: while it is down the
 * API answers 503 with Retry-After, quickly, and nothing else breaks; it recovers by itself
 * (no process restarted); every job accepted before, during and after is completed.
 */
export async function redisRestart({ short }: DrillOptions): Promise<DrillResult> {
  const r = newResult("Redis restart (AOF everysec)");
  const redis = await ownRedis({ aof: true });
  const prefix = "drill-redis";
  const overrides = {
    REDIS_URL: redis.url,
    MODELS: "echo",
    WORKER_LOCK_DURATION_MS: "3000",
    WORKER_STALLED_INTERVAL_MS: "1000",
    RETRY_AFTER_UNAVAILABLE_SECONDS: "2",
  };
  const api = await startApi(testConfig(prefix, overrides));
  const workers: Spawned[] = [];
  try {
    for (let i = 0; i < 2; i++) workers.push(await spawnWorker(testEnv(prefix, overrides)));
    const accepted: string[] = [];
    let down = false;
    let upAt = 0;
    let firstAcceptAfterUp = 0;
    let while503 = 0;
    let bad503 = 0;
    let slowest503Ms = 0;
    const other: Record<string, number> = {};
    let stopping = false;
    const load = loop(
      8,
      () => stopping,
      async (i) => {
        const started = Date.now();
        const res = await submit(api.url, { text: `redis drill ${i}`, sleep_ms: 20 }).catch(
          () => ({ status: 0 }) as const,
        );
        if (res.status === 202 || res.status === 200) {
          if ("id" in res && res.id) accepted.push(res.id);
          if (upAt > 0 && firstAcceptAfterUp === 0) firstAcceptAfterUp = Date.now();
          return;
        }
        if (res.status === 503) {
          while503++;
          slowest503Ms = Math.max(slowest503Ms, Date.now() - started);
          if (!("retryAfter" in res) || !res.retryAfter || res.code !== "service_unavailable") bad503++;
        } else {
          other[String(res.status)] = (other[String(res.status)] ?? 0) + 1;
          if (res.status >= 500 || res.status === 0) r.errors5xx++;
        }
        await sleep(down ? 100 : 20);
      },
    );

    await sleep(short ? 3000 : 8000);
    const before = accepted.length;
    down = true;
    await redis.stop("SIGTERM");
    const downFor = short ? 3000 : 10_000;
    await sleep(downFor);
    await redis.start();
    down = false;
    upAt = Date.now();
    await sleep(short ? 4000 : 10_000);
    stopping = true;
    await load;
    if (firstAcceptAfterUp > 0) r.maxRecoveryMs = firstAcceptAfterUp - upAt;

    const settled = await settle(api.url, accepted, 60_000);
    r.accepted = accepted.length;
    r.completed = settled.byStatus.completed ?? 0;
    r.lost = settled.notCompleted.length;
    r.duplicated = [...completions(workers).values()].filter((n) => n > 1).length;
    check(
      r,
      before > 50 && accepted.length > before,
      `jobs accepted before (${before}) and after (${accepted.length - before}) the restart`,
    );
    check(
      r,
      while503 > 0 && bad503 === 0,
      `${while503} answers while down were 503 + Retry-After + service_unavailable (${bad503} not)`,
    );
    check(r, slowest503Ms < 3000, `503s came fast (slowest ${slowest503Ms} ms)`);
    check(
      r,
      firstAcceptAfterUp > 0 && r.maxRecoveryMs < 10_000,
      `accepting again ${r.maxRecoveryMs} ms after Redis was back, nothing restarted`,
    );
    check(r, r.lost === 0, `0 accepted jobs lost (${JSON.stringify(settled.byStatus)})`);
    check(r, r.errors5xx === 0, `no 5xx other than 503 (${JSON.stringify(other)})`);
    r.notes.push(
      `Redis down ${downFor / 1000} s (SIGTERM: it fsyncs the AOF before exiting); appendfsync everysec means a crash (kill -9, power loss) can lose the writes of the last ~1 s, including jobs already answered 202`,
      "max recovery = Redis accepting connections again until the API accepted the next job",
    );
  } finally {
    await Promise.all(workers.map((w) => stop(w)));
    await api.close();
    await redis.destroy();
  }
  return r;
}

runIfMain(import.meta, redisRestart);
