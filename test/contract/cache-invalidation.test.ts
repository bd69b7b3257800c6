import assert from "node:assert/strict";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { ResultCache } from "../../src/cache/result-cache.js";
import { testConfig } from "../support/config.js";
import { call, eventually } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { cleanupPrefix, REDIS_URL, uniquePrefix } from "../support/redis.js";
import { delayingProxy, type DelayingProxy } from "../support/redis-proxy.js";
import { makeRepository } from "./fixtures.js";

const MODELS = ["echo", "sentiment", "cars-mpg"];

/** The commands (RESP arrays) of a chunk a client wrote, each as written. */
function commands(chunk: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (i < chunk.length) {
    const start = i;
    const head = chunk.indexOf("\r\n", i);
    const parts = Number(chunk.toString("latin1", i + 1, head));
    i = head + 2;
    for (let k = 0; k < parts; k++) {
      const end = chunk.indexOf("\r\n", i);
      i = end + 2 + Number(chunk.toString("latin1", i + 1, end)) + 2;
    }
    out.push(chunk.subarray(start, i));
  }
  return out;
}

void describe("invalidating the whole cache when Redis stops answering half way", () => {
  const prefix = uniquePrefix("cache-inval");
  let proxy: DelayingProxy;
  let api: ApiHandle;
  let redis: Redis;
  let cache: ResultCache;
  // While set: the commands carrying `id` reach Redis up to `pass` of them; from the next one on,
  // nothing more of the API's does (as when the connection is lost there).
  let cut: { id: string; pass: number; seen: number; cutting: boolean } | undefined;

  before(async () => {
    proxy = await delayingProxy(new URL(REDIS_URL), {
      rewriteRequest: (chunk) => {
        if (!cut) return chunk;
        const kept: Buffer[] = [];
        for (const c of commands(chunk)) {
          if (c.includes(cut.id) && ++cut.seen > cut.pass) cut.cutting = true;
          if (!cut.cutting) kept.push(c);
        }
        return Buffer.concat(kept);
      },
    });
    api = await startApi(
      testConfig(prefix, { REDIS_URL: proxy.url, REDIS_COMMAND_TIMEOUT_MS: "500", MODELS: MODELS.join(",") }),
    );
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    cache = new ResultCache(redis, prefix);
  });
  after(async () => {
    await api?.close();
    proxy?.server.close();
    redis?.disconnect();
    await cleanupPrefix(prefix);
  });

  const admission = (model: string) =>
    cache.admit({
      model,
      version: "1",
      hash: "same-input",
      useCache: true,
      coalesce: false,
      jobId: `${model}.seed`,
      inflightTtlMs: 10_000,
      claimWindowMs: 1000,
      maxDepth: 1_000_000,
    });
  /** A result in the cache for the model's input, as a worker leaves it. */
  const seed = async (model: string) => {
    const a = await admission(model);
    assert.equal(a.kind, "claim");
    await cache.store({ key: a.cacheKey, inflightKey: a.inflightKey, ttlSeconds: 600 }, `${model}.seed`, {
      output: { seeded: model },
      job_id: `${model}.seed`,
      created_at: new Date().toISOString(),
      inference_ms: 1,
    });
  };
  const cached = async (model: string) => (await admission(model)).kind === "hit";
  const invalidate = (body: Record<string, unknown>) =>
    call(api.url, "POST", "/api/admin/cache/invalidate", body);

  it("the 503 says which models are done; the same id finishes the others and only them", async () => {
    for (const m of MODELS) await seed(m);
    // A first invalidation (its id made up by the API) loads the script into Redis.
    const first = await invalidate({});
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.invalidated, "all");
    assert.deepEqual([...(first.body.models as string[])].sort(), [...MODELS].sort());
    assert.match(String(first.body.invalidation_id), /^[0-9a-f]{16}$/);
    for (const m of MODELS) assert.equal(await cached(m), false, `${m} invalidated`);

    // One model's invalidation reaches Redis, then the connection goes quiet.
    for (const m of MODELS) await seed(m);
    const id = `inv-${prefix}`;
    cut = { id, pass: 1, seen: 0, cutting: false };
    const partial = await invalidate({ invalidation_id: id });
    assert.equal(partial.status, 503, JSON.stringify(partial.body));
    assert.ok(partial.headers.get("retry-after"));
    const error = partial.body.error as {
      code: string;
      message: string;
      details: { invalidation_id: string; invalidated: string[]; remaining: string[] };
    };
    assert.equal(error.code, "service_unavailable");
    assert.equal(error.details.invalidation_id, id);
    assert.equal(error.details.invalidated.length, 1);
    assert.equal(error.details.remaining.length, 2);
    assert.deepEqual([...error.details.invalidated, ...error.details.remaining].sort(), [...MODELS].sort());
    assert.match(error.message, new RegExp(`1 of 3 models.*"invalidation_id": "${id}"`));
    // What it says is what happened.
    const [done] = error.details.invalidated as [string];
    assert.equal(await cached(done), false, `${done} reported done`);
    for (const m of error.details.remaining) assert.equal(await cached(m), true, `${m} reported remaining`);

    // The connection is back. A result computed since then must survive the retry.
    cut = undefined;
    proxy.dropConnections();
    await seed(done);
    const retried = await eventually(async () => {
      const r = await invalidate({ invalidation_id: id });
      return r.status === 200 && r;
    });
    assert.equal(retried.body.invalidated, "all");
    assert.equal(retried.body.invalidation_id, id);
    assert.equal(await cached(done), true, `${done} was not invalidated twice`);
    for (const m of error.details.remaining) assert.equal(await cached(m), false, `${m} finished`);

    // Once more: nothing changes.
    for (const m of error.details.remaining) await seed(m);
    assert.equal((await invalidate({ invalidation_id: id })).status, 200);
    for (const m of MODELS) assert.equal(await cached(m), true, `${m} untouched by a repeat`);

    // A new invalidation is a new one.
    assert.equal((await invalidate({})).status, 200);
    for (const m of MODELS) assert.equal(await cached(m), false, `${m} invalidated again`);

    // The earlier id, repeated after that newer invalidation, is still one the models took.
    for (const m of MODELS) await seed(m);
    assert.equal((await invalidate({ invalidation_id: id })).status, 200);
    for (const m of MODELS) assert.equal(await cached(m), true, `${m} untouched by an old id`);
  });

  it("an invalidation id goes with the whole cache only", async () => {
    const r = await invalidate({ model: "echo", invalidation_id: "x" });
    assert.equal(r.status, 400);
    assert.equal((r.body.error as { code: string }).code, "invalid_parameter");
    assert.equal((await invalidate({ invalidation_id: "not allowed!" })).status, 400);
  });

  it("an input the model would refuse is 422, not a 200 that invalidated nothing", async () => {
    const r = await invalidate({ model: "sentiment", input: { txt: "a typo of text" } });
    assert.equal(r.status, 422, JSON.stringify(r.body));
    const error = r.body.error as { code: string; message: string };
    assert.equal(error.code, "invalid_input");
    assert.match(error.message, /^body\.input is not an input of model "sentiment"/);
    assert.equal((await invalidate({ model: "sentiment", input: { text: "fine" } })).status, 200);
  });
});

void describe("invalidating one version of a model", () => {
  // One model, cached, in two versions: version 2 a copy of version 1 under its own number.
  const repo = makeRepository({ cached: { cache: { ttlSeconds: 600 } } });
  const v2 = path.join(repo.dir, "cached", "2");
  cpSync(path.join(repo.dir, "cached", "1"), v2, { recursive: true });
  const manifest = JSON.parse(readFileSync(path.join(v2, "manifest.json"), "utf8")) as object;
  writeFileSync(path.join(v2, "manifest.json"), JSON.stringify({ ...manifest, version: "2" }));
  const inferline = useInferline("cache-inval-version", {
    env: { MODEL_REPOSITORY: repo.dir },
    worker: true,
  });
  after(() => repo.remove());

  const body = { text: "the same input for both versions" };
  /** The answer of `version` to `body`, waiting up to 10 s for it. */
  const predict = async (version: string) => {
    const r = await call(inferline.url, "POST", `/api/ml/cached?version=${version}`, body, {
      prefer: "wait=10",
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.status, "completed");
    assert.equal(r.body.version, version);
    return r.body;
  };
  const invalidate = async (version: string) => {
    const r = await call(inferline.url, "POST", "/api/admin/cache/invalidate", { model: "cached", version });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { invalidated: "version", model: "cached", version });
  };

  it("drops that version's cached answers and leaves the other version's cached", async () => {
    // Both versions compute the input once, then answer it from the cache.
    const first = { "1": await predict("1"), "2": await predict("2") };
    assert.equal(first["1"].cached, false);
    assert.equal(first["2"].cached, false);
    assert.notEqual(first["1"].job_id, first["2"].job_id);
    for (const v of ["1", "2"] as const) {
      const hit = await predict(v);
      assert.equal(hit.cached, true, `version ${v} cached`);
      assert.equal(hit.job_id, first[v].job_id);
    }

    await invalidate("1");
    const recomputed = await predict("1");
    assert.equal(recomputed.cached, false, "version 1 invalidated");
    assert.notEqual(recomputed.job_id, first["1"].job_id);
    const kept = await predict("2");
    assert.equal(kept.cached, true, "version 2 untouched by version 1's invalidation");
    assert.equal(kept.job_id, first["2"].job_id);

    // And the other way round: version 1's fresh answer outlives version 2's invalidation.
    await invalidate("2");
    assert.equal((await predict("2")).cached, false, "version 2 invalidated");
    const still = await predict("1");
    assert.equal(still.cached, true, "version 1 untouched by version 2's invalidation");
    assert.equal(still.job_id, recomputed.job_id);
  });
});
