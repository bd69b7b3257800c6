import { randomBytes } from "node:crypto";
import { Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import { closedLoop, latencySummary, summarize, type Scenario } from "../lib.js";
import { addAndWait } from "../support/bare.js";
import { predictAndWait } from "../support/http.js";
import { interleaved, type Arm } from "../support/interleave.js";
import { benchEnv, startBaseline, startHttpBaseline, startStack, stopChild } from "../support/processes.js";
import { cleanupPrefix, commandCounts, localRedisPid } from "../support/redis.js";
import { SYSTEMS } from "../support/systems.js";

type Cpu = Record<string, number>;

const { list: LIST, bare: BARE, floor: FLOOR, inferline: E2E } = SYSTEMS;

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * What durability and the HTTP contract cost: the same trivial job, the same concurrency, one
 * worker process each, all running at once and measured in turns of 1000 requests (see
 * interleaved), so drift of the machine hits them alike:
 *  - list queue: the tutorial design (LPUSH, BRPOP, SET; no leases, retries or ids), the client
 *    woken by BLPOP on a per-job key (kinder to it than polling);
 *  - bare BullMQ: Queue.add + waitUntilFinished on QueueEvents, trivial processor;
 *  - the same behind a minimal HTTP route: a Fastify POST handler in its own process that adds
 *    the job and answers when it completes, nothing else. What any HTTP front end of BullMQ
 *    costs at least: the floor under Inferline's API;
 *  - Inferline end to end: HTTP POST /api/ml/echo with `Prefer: wait` (validation, job record,
 *    priority queue, worker, batcher, result), through a separate API process, result cache and
 *    coalescing off (identical inputs would be answered without a job).
 * Redis's own command counts, read around every turn, tell whether a system asks more of Redis
 * per job or only spends more CPU in its processes.
 * The last three are then measured one request at a time too, taking turns (one BullMQ round
 * trip, one through the minimal route, one through Inferline, ...): the round trip of a single
 * job on an idle system, which saturation does not inflate.
 */
export const run: Scenario = async (ctx) => {
  const chunks = ctx.quick ? 2 : 6;
  const chunkSize = ctx.quick ? 300 : 1000;
  const total = chunks * chunkSize;
  const warm = ctx.quick ? 100 : 500;
  const solo = ctx.quick ? 100 : 1000;
  const concurrency = 16;
  const url = ctx.redisUrl;
  const redisPid = await localRedisPid(url);
  const cleanups: (() => Promise<void>)[] = [];
  const arms: Arm[] = [];
  const rows: Record<string, ReturnType<typeof summarize>> = {};
  const cpu: Record<string, Cpu> = {};
  const redisWork: Record<string, Record<string, number>> = {};
  const unloaded: Record<string, ReturnType<typeof latencySummary>> = {};
  try {
    // --- list queue (tutorial)
    const listPrefix = `bench-list-${randomBytes(3).toString("hex")}`;
    const listWorker = await startBaseline("list", url, listPrefix, concurrency);
    cleanups.push(async () => {
      await stopChild(listWorker);
      await cleanupPrefix(url, listPrefix);
    });
    const conns = Array.from({ length: concurrency }, () => new Redis(url));
    cleanups.push(async () => conns.forEach((c) => c.disconnect()));
    // Requests on one connection must not interleave: one caller per connection.
    const free = [...conns];
    arms.push({
      name: LIST,
      pids: { worker: listWorker.pid, redis: redisPid },
      one: async (i) => {
        const c = free.pop()!;
        try {
          const id = `${process.pid}-${i}`;
          await c.lpush(`${listPrefix}:jobs`, JSON.stringify({ id, data: { text: "hello" } }));
          const done = await c.blpop(`${listPrefix}:done:${id}`, 10);
          if (!done) throw new Error("timeout");
          await c.get(`${listPrefix}:result:${id}`);
        } finally {
          free.push(c);
        }
      },
    });

    // --- bare BullMQ
    const barePrefix = `bench-bare-${randomBytes(3).toString("hex")}`;
    const bareWorker = await startBaseline("bare", url, barePrefix, concurrency);
    cleanups.push(async () => {
      await stopChild(bareWorker);
      await cleanupPrefix(url, barePrefix);
    });
    // BullMQ leaves connections it was given open: they are closed below.
    const bareConns = [new Redis(url), new Redis(url, { maxRetriesPerRequest: null })] as const;
    const bareQueue = new Queue("bare", { connection: bareConns[0], prefix: barePrefix });
    bareQueue.setMaxListeners(0);
    const bareEvents = new QueueEvents("bare", { connection: bareConns[1], prefix: barePrefix });
    bareEvents.setMaxListeners(0);
    cleanups.push(async () => {
      await bareEvents.close();
      await bareQueue.close();
      bareConns.forEach((c) => c.disconnect());
    });
    await bareEvents.waitUntilReady();
    arms.push({
      name: BARE,
      pids: { worker: bareWorker.pid, redis: redisPid },
      one: async () => {
        await addAndWait(bareQueue, bareEvents, { text: "hello" });
      },
    });

    // --- the same jobs, on the same worker, behind a minimal HTTP route
    const floor = await startHttpBaseline(url, barePrefix);
    cleanups.push(() => stopChild(floor.proc));
    arms.push({
      name: FLOOR,
      pids: { api: floor.proc.pid, worker: bareWorker.pid, redis: redisPid },
      one: (i) => predictAndWait(floor.url, "echo", { text: "hello", value: i }, 10).then(() => {}),
    });

    // --- Inferline end to end
    const prefix = `bench-e2e-${randomBytes(3).toString("hex")}`;
    const env = { MODELS: "echo", CACHE_ENABLED: "false", COALESCE_ENABLED: "false" };
    const stack = await startStack(benchEnv(url, prefix, env), ["--concurrency", String(concurrency)]);
    cleanups.push(async () => {
      await stack.stop();
      await cleanupPrefix(url, prefix);
    });
    arms.push({
      name: E2E,
      pids: { api: stack.api.pid, worker: stack.worker.pid, redis: redisPid },
      // Distinct inputs, as real traffic has.
      one: (i) => predictAndWait(stack.url, "echo", { text: "hello", value: i }, 10).then(() => {}),
    });

    for (const arm of arms) await closedLoop(concurrency, warm, (i) => arm.one(10 * total + i));
    const counter = new Redis(url);
    cleanups.push(async () => counter.disconnect());
    const measured = await interleaved(arms, {
      chunks,
      chunkSize,
      concurrency,
      onProgress: (name, d, n) => ctx.progress(name, d, n),
      counters: () => commandCounts(counter),
    });
    for (const [name, m] of Object.entries(measured)) {
      rows[name] = summarize(m.result);
      cpu[name] = m.cpu;
      redisWork[name] = m.counts;
    }

    // --- one request at a time, taking turns (the list queue is left out)
    const turns = arms.filter((a) => a.name !== LIST);
    const times = turns.map(() => [] as number[]);
    for (let i = 0; i < solo; i++) {
      for (const [k, arm] of turns.entries()) {
        const t0 = performance.now();
        await arm.one(20 * total + i);
        times[k]!.push(performance.now() - t0);
      }
    }
    turns.forEach((arm, k) => (unloaded[arm.name] = latencySummary(times[k]!)));
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  }
  const bare = rows[BARE]!;
  const e2e = rows[E2E]!;
  const ratio = e2e.throughput_per_s / bare.throughput_per_s;
  const floorRow = rows[FLOOR]!;
  const soloBare = unloaded[BARE]!;
  return {
    name: "overhead",
    tables: [
      {
        title: `Trivial job, ${concurrency} in flight, ${total} requests each in turns of ${chunkSize}, one worker process`,
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
        title:
          "Redis work per job: the commands it ran (those inside scripts included) and the script calls among them",
        columns: ["system", "commands", "script calls"],
        rows: Object.entries(redisWork).map(([name, w]) => [
          name,
          Number((w.commands ?? NaN).toFixed(1)),
          Number((w.scripts ?? NaN).toFixed(2)),
        ]),
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
      redis_per_job: redisWork,
      requests: total,
      results: rows,
      inferline_vs_bare_throughput: ratio,
      http_floor_vs_bare_throughput: floorRow.throughput_per_s / bare.throughput_per_s,
      inferline_vs_http_floor_throughput: e2e.throughput_per_s / floorRow.throughput_per_s,
      inferline_minus_bare_p50_ms: e2e.p50_ms - bare.p50_ms,
      unloaded,
      inferline_minus_bare_unloaded_p50_ms: unloaded[E2E]!.p50_ms - soloBare.p50_ms,
      http_floor_minus_bare_unloaded_p50_ms: unloaded[FLOOR]!.p50_ms - soloBare.p50_ms,
    },
  };
};
