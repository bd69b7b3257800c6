// Worker side of the overhead baselines, run as a child process:
//   bare <redisUrl> <prefix> <concurrency>   BullMQ Worker with a trivial processor
//   list <redisUrl> <prefix> <concurrency>   the tutorial design: BRPOP a job, SET its result
import { Worker } from "bullmq";
import { Redis } from "ioredis";

const [mode, url, prefix, conc] = process.argv.slice(2);
const concurrency = Number(conc);
if (!url || !prefix) throw new Error("usage: baseline-workers <bare|list> <redisUrl> <prefix> <concurrency>");

if (mode === "bare") {
  const w = new Worker("bare", async (job) => job.data as unknown, {
    connection: new Redis(url, { maxRetriesPerRequest: null }),
    prefix,
    concurrency,
  });
  await w.waitUntilReady();
  process.send?.("ready");
  process.on("SIGTERM", () => void w.close().then(() => process.exit(0)));
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
