import { randomBytes } from "node:crypto";
import { Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import { closedLoop, latencySummary, summarize, type Scenario } from "../lib.js";
import { predictAndWait } from "../support/http.js";
import { meterCpu } from "../support/procstat.js";
import { benchEnv, startBaseline, startHttpBaseline, startStack, stopChild } from "../support/processes.js";
import { cleanupPrefix, localRedisPid } from "../support/redis.js";

type Cpu = Record<string, number>;

/** Bare BullMQ behind a minimal HTTP route (see below). */
const FLOOR = "bare BullMQ + minimal HTTP route";

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * What durability and the HTTP contract cost: the same trivial job, the same concurrency, one
 * worker process each, measured back to back in one run:
 *  - list queue: the tutorial design (LPUSH, BRPOP, SET; no leases, retries or ids), the client
 *    woken by BLPOP on a per-job key (kinder to it than polling);
 *  - bare BullMQ: Queue.add + waitUntilFinished on QueueEvents, trivial processor;
 *  - the same behind a minimal HTTP route: a Fastify POST handler in its own process that adds
 *    the job and answers when it completes, nothing else. What any HTTP front end of BullMQ
 *    costs at least: the floor under Inferline's API;
 *  - Inferline end to end: HTTP POST /api/ml/echo with `Prefer: wait` (validation, job record,
 *    priority queue, worker, batcher, result), through a separate API process, result cache and
 *    coalescing off (identical inputs would be answered without a job).
 * All three are then measured one request at a time too, taking turns (one BullMQ round trip,
 * one through the minimal route, one through Inferline, ...) so that drift of the machine hits
 * them alike: the round trip of a single job on an idle system, which saturation does not
 * inflate.
 */
export const run: Scenario = async (ctx) => {
  const total = ctx.quick ? 600 : 6000;
  const warm = ctx.quick ? 100 : 500;
  const solo = ctx.quick ? 100 : 1000;
  const concurrency = 16;
  const url = ctx.redisUrl;
  const rows: Record<string, ReturnType<typeof summarize>> = {};
  const cpu: Record<string, Cpu> = {};
  const unloaded: Record<string, ReturnType<typeof latencySummary>> = {};
  const redisPid = await localRedisPid(url);

  // --- list queue (tutorial)
  {
    const prefix = `bench-list-${randomBytes(3).toString("hex")}`;
    const w = await startBaseline("list", url, prefix, concurrency);
    const conns = Array.from({ length: concurrency }, () => new Redis(url));
    let n = 0;
    const one = async (i: number) => {
      const c = conns[i % concurrency]!;
      const id = `${process.pid}-${n++}`;
      await c.lpush(`${prefix}:jobs`, JSON.stringify({ id, data: { text: "hello" } }));
      const done = await c.blpop(`${prefix}:done:${id}`, 10);
      if (!done) throw new Error("timeout");
      await c.get(`${prefix}:result:${id}`);
    };
    // Requests on one connection must not interleave: one caller per connection.
    await closedLoop(concurrency, warm, async (i) => one(i));
    const m = await meterCpu({ worker: w.pid, redis: redisPid }, total, () =>
      closedLoop(
        concurrency,
        total,
        async (i) => one(i),
        (d) => ctx.progress("list queue", d, total),
      ),
    );
    rows["list queue (tutorial)"] = summarize(m.result);
    cpu["list queue (tutorial)"] = m.cpu;
    conns.forEach((c) => c.disconnect());
    await stopChild(w);
    await cleanupPrefix(url, prefix);
  }

  // --- bare BullMQ, kept running (idle) until the one-at-a-time turns after Inferline's run
  const barePrefix = `bench-bare-${randomBytes(3).toString("hex")}`;
  const bareWorker = await startBaseline("bare", url, barePrefix, concurrency);
  // BullMQ leaves connections it was given open: they are closed below.
  const bareConns = [new Redis(url), new Redis(url, { maxRetriesPerRequest: null })] as const;
  const bareQueue = new Queue("bare", { connection: bareConns[0], prefix: barePrefix });
  bareQueue.setMaxListeners(0);
  const bareEvents = new QueueEvents("bare", { connection: bareConns[1], prefix: barePrefix });
  bareEvents.setMaxListeners(0);
  const bareOne = async () => {
    const job = await bareQueue.add(
      "x",
      { text: "hello" },
      { removeOnComplete: { age: 3600 }, removeOnFail: { age: 3600 } },
    );
    await job.waitUntilFinished(bareEvents, 10_000);
  };
  try {
    await bareEvents.waitUntilReady();
    await closedLoop(concurrency, warm, bareOne);
    const m = await meterCpu({ worker: bareWorker.pid, redis: redisPid }, total, () =>
      closedLoop(concurrency, total, bareOne, (d) => ctx.progress("bare BullMQ", d, total)),
    );
    rows["bare BullMQ"] = summarize(m.result);
    cpu["bare BullMQ"] = m.cpu;

    // --- the same jobs, on the same worker, behind a minimal HTTP route
    const floor = await startHttpBaseline(url, barePrefix);
    const floorOne = (i: number) =>
      predictAndWait(floor.url, "echo", { text: "hello", value: i }, 10).then(() => {});
    try {
      await closedLoop(concurrency, warm, floorOne);
      const f = await meterCpu({ api: floor.proc.pid, worker: bareWorker.pid, redis: redisPid }, total, () =>
        closedLoop(concurrency, total, floorOne, (d) => ctx.progress("BullMQ + HTTP", d, total)),
      );
      rows[FLOOR] = summarize(f.result);
      cpu[FLOOR] = f.cpu;

      // --- Inferline end to end
      const prefix = `bench-e2e-${randomBytes(3).toString("hex")}`;
      const env = { MODELS: "echo", CACHE_ENABLED: "false", COALESCE_ENABLED: "false" };
      const stack = await startStack(benchEnv(url, prefix, env), ["--concurrency", String(concurrency)]);
      try {
        // Distinct inputs, as real traffic has.
        const one = (i: number) =>
          predictAndWait(stack.url, "echo", { text: "hello", value: i }, 10).then(() => {});
        await closedLoop(concurrency, warm, (i) => one(total + i));
        const m = await meterCpu(
          { api: stack.api.pid, worker: stack.worker.pid, redis: redisPid },
          total,
          () => closedLoop(concurrency, total, one, (d) => ctx.progress("Inferline e2e", d, total)),
        );
        rows["Inferline (HTTP, Prefer: wait)"] = summarize(m.result);
        cpu["Inferline (HTTP, Prefer: wait)"] = m.cpu;

        // --- one request at a time, taking turns
        const turns = { bare: [] as number[], floor: [] as number[], e2e: [] as number[] };
        const timed = async (into: number[], fn: () => Promise<void>) => {
          const t0 = performance.now();
          await fn();
          into.push(performance.now() - t0);
        };
        for (let i = 0; i < solo; i++) {
          await timed(turns.bare, bareOne);
          await timed(turns.floor, () => floorOne(2 * total + i));
          await timed(turns.e2e, () => one(2 * total + i));
        }
        unloaded["bare BullMQ"] = latencySummary(turns.bare);
        unloaded[FLOOR] = latencySummary(turns.floor);
        unloaded["Inferline (HTTP, Prefer: wait)"] = latencySummary(turns.e2e);
      } finally {
        await stack.stop();
        await cleanupPrefix(url, prefix);
      }
    } finally {
      await stopChild(floor.proc);
    }
  } finally {
    await bareEvents.close();
    await bareQueue.close();
    bareConns.forEach((c) => c.disconnect());
    await stopChild(bareWorker);
    await cleanupPrefix(url, barePrefix);
  }
  const bare = rows["bare BullMQ"];
  const e2e = rows["Inferline (HTTP, Prefer: wait)"];
  const ratio = e2e.throughput_per_s / bare.throughput_per_s;
  const floorRow = rows[FLOOR];
  const soloBare = unloaded["bare BullMQ"];
  return {
    name: "overhead",
    tables: [
      {
        title: `Trivial job, ${concurrency} in flight, ${total} requests each, one worker process`,
        columns: ["system", "jobs/s", "p50 ms", "p99 ms", "errors", "throughput vs bare BullMQ"],
        rows: Object.entries(rows).map(([name, s]) => [
          name,
          s.throughput_per_s,
          s.p50_ms,
          s.p99_ms,
          s.errors,
          `${((s.throughput_per_s / bare.throughput_per_s) * 100).toFixed(0)}%`,
        ]),
      },
      {
        title: "CPU per job (ms) by process: on a saturated box, throughput is cores / their sum",
        columns: ["system", "client", "API", "worker", "Redis", "sum"],
        rows: Object.entries(cpu).map(([name, c]) => {
          const v = (k: string) => (c[k] === undefined ? "-" : Number(c[k].toFixed(3)));
          return [
            name,
            v("client"),
            v("api"),
            v("worker"),
            v("redis"),
            Number(sum(Object.values(c)).toFixed(3)),
          ];
        }),
      },
      {
        title: `One request at a time, taking turns: ${solo} round trips each on an otherwise idle system`,
        columns: ["system", "p50 ms", "p99 ms", "p50 vs bare BullMQ"],
        rows: Object.entries(unloaded).map(([name, s]) => [
          name,
          s.p50_ms,
          s.p99_ms,
          `${s.p50_ms >= soloBare.p50_ms ? "+" : ""}${(s.p50_ms - soloBare.p50_ms).toFixed(2)} ms`,
        ]),
      },
    ],
    data: {
      concurrency,
      cpu_ms_per_job: cpu,
      requests: total,
      results: rows,
      inferline_vs_bare_throughput: ratio,
      http_floor_vs_bare_throughput: floorRow.throughput_per_s / bare.throughput_per_s,
      inferline_vs_http_floor_throughput: e2e.throughput_per_s / floorRow.throughput_per_s,
      inferline_minus_bare_p50_ms: e2e.p50_ms - bare.p50_ms,
      unloaded,
      inferline_minus_bare_unloaded_p50_ms:
        unloaded["Inferline (HTTP, Prefer: wait)"].p50_ms - soloBare.p50_ms,
      http_floor_minus_bare_unloaded_p50_ms: unloaded[FLOOR].p50_ms - soloBare.p50_ms,
    },
  };
};
