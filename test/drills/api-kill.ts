import { setTimeout as sleep } from "node:timers/promises";
import { testEnv } from "../support/config.js";
import { freePort } from "../support/http.js";
import { spawnCli, spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import { startNginx, type LocalNginx } from "../deploy/support/nginx.js";
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

/**
 * Three API processes behind the project's nginx config; one is killed (-9) under load.
 * Promises: under 0.1% of client requests fail, and every accepted job completes.
 */
export async function apiKill({ short }: DrillOptions): Promise<DrillResult> {
  const r = newResult("1 of 3 API processes killed behind nginx");
  const prefix = uniquePrefix("drill-api");
  const env = testEnv(prefix, { MODELS: "echo", LOG_LEVEL: "info" });
  const apis: { port: number; proc: Spawned }[] = [];
  const workers: Spawned[] = [];
  let nginx: LocalNginx | undefined;
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      apis.push({ port, proc: spawnCli(["api", "--port", String(port)], env) });
    }
    await Promise.all(apis.map((a) => a.proc.waitForLine((l) => l.event === "api_started", 30_000)));
    for (let i = 0; i < 2; i++) workers.push(await spawnWorker(env));
    // One loopback client makes all the load: lift nginx's per-client limit.
    nginx = await startNginx(
      await freePort(),
      apis.map((a) => `127.0.0.1:${a.port}`),
      { ratePerSecond: 100_000 },
    );
    const base = nginx.url;

    const accepted: string[] = [];
    const byStatus: Record<string, number> = {};
    let requests = 0;
    let failed = 0;
    let killedAt = 0;
    let lastFailureAt = 0;
    let stopping = false;
    const load = loop(
      8,
      () => stopping,
      async (i) => {
        requests++;
        let status: number;
        try {
          if (i % 3 === 2) {
            const res = await fetch(`${base}/health/live`);
            await res.arrayBuffer();
            status = res.status;
          } else {
            const res = await submit(base, { text: `api drill ${i}` });
            status = res.status;
            if (res.id) accepted.push(res.id);
          }
        } catch {
          status = 0;
        }
        byStatus[String(status)] = (byStatus[String(status)] ?? 0) + 1;
        if (status === 0 || status >= 400) {
          failed++;
          lastFailureAt = Date.now();
        }
        if (status >= 500 || status === 0) r.errors5xx++;
      },
    );
    await sleep(short ? 3000 : 10_000);
    killedAt = Date.now();
    apis[2]!.proc.kill("SIGKILL");
    // Run on until the error rate means something: enough requests after the kill (at most 60 s).
    const target = short ? 8000 : 20_000;
    while (
      (requests < target || Date.now() - killedAt < (short ? 10_000 : 30_000)) &&
      Date.now() - killedAt < 60_000
    ) {
      await sleep(250);
    }
    stopping = true;
    await load;
    if (lastFailureAt > killedAt) r.maxRecoveryMs = lastFailureAt - killedAt;

    const settled = await settle(base, accepted, 60_000);
    r.accepted = accepted.length;
    r.completed = settled.byStatus.completed ?? 0;
    r.lost = settled.notCompleted.length;
    r.duplicated = [...completions(workers).values()].filter((n) => n > 1).length;
    const rate = failed / Math.max(1, requests);
    check(r, requests > 2000, `load was real: ${requests} requests`);
    check(
      r,
      rate < 0.001,
      `client errors ${failed}/${requests} = ${(rate * 100).toFixed(3)}% < 0.1% (${JSON.stringify(byStatus)})`,
    );
    check(r, r.lost === 0, `0 accepted jobs lost (${JSON.stringify(settled.byStatus)})`);
    r.notes.push(
      "5xx here = client-visible errors from nginx (requests in flight on the killed process; nginx does not resend a POST)",
      "max recovery = kill until the last client error",
    );
  } finally {
    await nginx?.stop();
    await Promise.all([...apis.map((a) => stop(a.proc)), ...workers.map((w) => stop(w))]);
    await cleanupPrefix(prefix);
  }
  return r;
}

runIfMain(import.meta, apiKill);
