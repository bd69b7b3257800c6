// The overhead baselines' own processes:
//   bare <redisUrl> <prefix> <concurrency>   BullMQ Worker with a trivial processor
//   list <redisUrl> <prefix> <concurrency>   the tutorial design: BRPOP a job, SET its result
//   http <redisUrl> <prefix> <port|0>        bare BullMQ behind a minimal HTTP route: POST adds
//                                            a job and answers when it completes (the front end
//                                            of "bare BullMQ" + HTTP, nothing else)
import Fastify from "fastify";
import { Queue, QueueEvents, Worker } from "bullmq";
import { Redis } from "ioredis";
import { addAndWait } from "./bare.js";

const [mode, url, prefix, arg] = process.argv.slice(2);
const concurrency = Number(arg);
if (!url || !prefix) throw new Error("usage: baseline-workers <bare|list|http> <redisUrl> <prefix> <n>");

if (mode === "bare") {
  const w = new Worker("bare", async (job) => job.data as unknown, {
    connection: new Redis(url, { maxRetriesPerRequest: null }),
    prefix,
    concurrency,
  });
  await w.waitUntilReady();
  process.send?.("ready");
  process.on("SIGTERM", () => void w.close().then(() => process.exit(0)));
} else if (mode === "http") {
  const queue = new Queue("bare", { connection: new Redis(url), prefix });
  const events = new QueueEvents("bare", {
    connection: new Redis(url, { maxRetriesPerRequest: null }),
    prefix,
  });
  queue.setMaxListeners(0);
  events.setMaxListeners(0);
  await events.waitUntilReady();
  const app = Fastify();
  app.post("/api/ml/:model", async (req) => {
    const { jobId, result } = await addAndWait(queue, events, req.body);
    return { job_id: jobId, status: "completed", output: result };
  });
  await app.listen({ host: "127.0.0.1", port: Number(arg) });
  const address = app.server.address();
  // Ready, on this port.
  process.send?.(typeof address === "object" && address ? address.port : 0);
  process.on("SIGTERM", () => void app.close().then(() => process.exit(0)));
} else {
  let stopping = false;
  process.on("SIGTERM", () => {
    stopping = true;
    setTimeout(() => process.exit(0), 1200).unref();
  });
  const loops = Array.from({ length: concurrency }, async () => {
    const r = new Redis(url);
    while (!stopping) {
      const popped = await r.brpop(`${prefix}:jobs`, 1);
      if (!popped) continue;
      const job = JSON.parse(popped[1]) as { id: string; data: unknown };
      await r
        .multi()
        .set(`${prefix}:result:${job.id}`, JSON.stringify(job.data), "EX", 3600)
        .rpush(`${prefix}:done:${job.id}`, "1")
        .expire(`${prefix}:done:${job.id}`, 60)
        .exec();
    }
    r.disconnect();
  });
  process.send?.("ready");
  await Promise.all(loops);
}
