import { randomBytes } from "node:crypto";
import { closedLoop, openLoop, percentile, summarize, type Scenario } from "../lib.js";
import { request } from "../support/http.js";
import { benchEnv, startStack } from "../support/processes.js";
import { cleanupPrefix } from "../support/redis.js";

function serverMs(headers: Record<string, string | string[] | undefined>): number {
  return Number(/dur=([\d.]+)/.exec(String(headers["server-timing"] ?? ""))?.[1] ?? NaN);
}

/**
 * Client-contract costs, in one run against one API process:
 *  - cache hits at a fixed arrival rate (open loop: requests are sent on schedule whether or not
 *    earlier ones have returned, so a slow answer cannot hide the ones queued behind it);
 *    latency measured by the client from each request's scheduled time, and inside the server
 *    (Server-Timing);
 *  - enqueueing the same number of inputs with single POSTs vs the batch endpoint.
 */
export const run: Scenario = async (ctx) => {
  const prefix = `bench-contract-${randomBytes(3).toString("hex")}`;
  const stack = await startStack(benchEnv(ctx.redisUrl, prefix, { MODELS: "sentiment" }));
  const BASE = stack.url;
  try {
    // --- cache hits, open loop
    const rate = 1000;
    const seconds = ctx.quick ? 2 : 10;
    const texts = Array.from({ length: 50 }, (_, i) => `cached input number ${i}, lovely`);
    for (const text of texts) {
      await request(BASE, "POST", "/api/ml/sentiment", { text }, { prefer: "wait=10" });
    }
    const client: number[] = [];
    const server: number[] = [];
    let misses = 0;
    const hit = async (i: number) => {
      const res = await request(BASE, "POST", "/api/ml/sentiment", { text: texts[i % texts.length] });
      if (res.status !== 200) throw new Error(String(res.status));
      if (!res.body.cached) misses++;
      server.push(serverMs(res.headers));
    };
    // One second at the same rate first: compiled code paths and warm connections.
    await openLoop(rate, 1, hit);
    server.length = 0;
    misses = 0;
    const open = await openLoop(rate, seconds, hit, {
      maxInFlight: 2000,
      onProgress: (d, t) => ctx.progress("cache hits", d, t),
    });
    client.push(...open.latenciesMs);
    const errors = open.errors;
    const achieved = (client.length / open.durationMs) * 1000;

    // --- enqueue: single POSTs vs batch endpoint (no waiting; distinct inputs)
    const n = ctx.quick ? 1000 : 20_000;
    const single = await closedLoop(
      32,
      n,
      async (i) => {
        const res = await request(BASE, "POST", "/api/ml/sentiment", { text: `single ${prefix} ${i}` });
        if (res.status !== 202 && res.status !== 200) throw new Error(String(res.status));
      },
      (d) => ctx.progress("single POSTs", d, n),
    );
    const batchSize = 100;
    const batches = Math.ceil(n / batchSize);
    const batch = await closedLoop(
      4,
      batches,
      async (b) => {
        const inputs = Array.from({ length: batchSize }, (_, i) => ({
          text: `batch ${prefix} ${b * batchSize + i}`,
        }));
        const res = await request(BASE, "POST", "/api/ml/sentiment/batch", { inputs });
        if (res.status !== 202 && res.status !== 200) throw new Error(String(res.status));
      },
      (d) => ctx.progress("batch POSTs", d, batches),
    );
    const singleRate = summarize(single).throughput_per_s;
    const batchRate = summarize(batch).throughput_per_s * batchSize;

    const cacheHits = {
      target_rate_per_s: rate,
      achieved_rate_per_s: achieved,
      requests: client.length,
      misses,
      errors,
      server_p50_ms: percentile(server, 50),
      server_p99_ms: percentile(server, 99),
      client_p50_ms: percentile(client, 50),
      client_p99_ms: percentile(client, 99),
    };
    return {
      name: "contract",
      tables: [
        {
          title: `Cache hits at a fixed ${rate} req/s for ${seconds} s (open loop)`,
          columns: ["measured where", "p50 ms", "p99 ms", "requests", "misses", "errors"],
          rows: [
            [
              "inside the API (Server-Timing)",
              cacheHits.server_p50_ms,
              cacheHits.server_p99_ms,
              client.length,
              misses,
              errors,
            ],
            [
              "at the client, from the scheduled time",
              cacheHits.client_p50_ms,
              cacheHits.client_p99_ms,
              client.length,
              misses,
              errors,
            ],
          ],
        },
        {
          title: `Enqueueing ${n} inputs`,
          columns: ["how", "inputs/s", "errors", "vs single POSTs"],
          rows: [
            ["single POSTs, 32 in flight", singleRate, single.errors, "1.0×"],
            [
              `batch endpoint, ${batchSize} per request, 4 in flight`,
              batchRate,
              batch.errors,
              `${(batchRate / singleRate).toFixed(1)}×`,
            ],
          ],
        },
      ],
      data: {
        cache_hits: cacheHits,
        enqueue: {
          inputs: n,
          single_per_s: singleRate,
          batch_per_s: batchRate,
          batch_size: batchSize,
          ratio: batchRate / singleRate,
        },
      },
    };
  } finally {
    await stack.stop();
    await cleanupPrefix(ctx.redisUrl, prefix);
  }
};
