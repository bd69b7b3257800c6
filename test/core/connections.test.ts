import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { testConfig } from "../support/config.js";
import { eventually } from "../support/http.js";
import { ownRedis, uniquePrefix, type OwnRedis } from "../support/redis.js";
import { bearer, testKeys } from "../security/support.js";

/** The clients connected to a Redis, by the last command each ran. */
async function clients(admin: Redis): Promise<string[]> {
  const list = (await admin.client("LIST")) as string;
  const self = String(await admin.client("ID"));
  return list
    .split("\n")
    .filter((l) => l.length > 0 && !l.startsWith(`id=${self} `))
    .map((l) => /cmd=(\S+)/.exec(l)?.[1] ?? "?");
}

/** Waits until the clients settle at `expected`, then returns them. */
async function settled(admin: Redis, readers: number, expected: number): Promise<string[]> {
  await eventually(async () => {
    const now = await clients(admin);
    return now.filter((c) => c === "xread").length === readers && now.length === expected;
  }).catch(() => {});
  return clients(admin);
}

describe("Redis connections an API process holds", () => {
  let redis: OwnRedis;
  let admin: Redis;
  let api: ApiHandle;

  before(async () => {
    // A server of its own: every client on it is this API's.
    redis = await ownRedis({ aof: false });
    admin = new Redis(redis.url);
    const env = { REDIS_URL: redis.url, MODELS: "echo,sentiment", AUTH_DISABLED: "true" };
    api = await startApi(testConfig(uniquePrefix("conns"), env));
  });

  after(async () => {
    await api?.close();
    admin?.disconnect();
    await redis?.destroy();
  });

  it("one for commands and one event reader per model, no idle extras", async () => {
    // The readers connect, and the templates they were duplicated from go away.
    const all = await settled(admin, 2, 3);
    assert.equal(all.filter((c) => c === "xread").length, 2, `clients: ${all.join(", ")}`);
    assert.equal(all.length, 3, `clients: ${all.join(", ")}`);
  });

  it("a job id naming a model not served is unknown, and opens no reader", async () => {
    // Waiting on a job starts its model's event reader: a name taken from the id would give
    // every guessed name a connection of its own, kept for good.
    for (let i = 0; i < 5; i++) {
      const id = `guessed${i}.${"0".repeat(32)}`;
      const res = await fetch(`${api.url}/api/results/${id}`, { headers: { prefer: "wait=1" } });
      assert.equal(res.status, 404);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, "job_not_found");
    }
    const all = await settled(admin, 2, 3);
    assert.equal(all.filter((c) => c === "xread").length, 2, `clients: ${all.join(", ")}`);
    assert.equal(all.length, 3, `clients: ${all.join(", ")}`);
  });
});

describe("Redis connections of an API with keys, dashboard sessions and rate limits", () => {
  let redis: OwnRedis;
  let admin: Redis;
  let api: ApiHandle;
  const keys = testKeys();

  before(async () => {
    redis = await ownRedis({ aof: false });
    admin = new Redis(redis.url);
    const env = {
      REDIS_URL: redis.url,
      MODELS: "echo",
      ...keys.env,
      RATE_LIMIT_KEY_RPS: "1",
      RATE_LIMIT_KEY_BURST: "50",
    };
    api = await startApi(testConfig(uniquePrefix("conns-auth"), env));
  });

  after(async () => {
    await api?.close();
    admin?.disconnect();
    await redis?.destroy();
  });

  it("sessions and rate limits use the command connection: still one, plus the reader", async () => {
    // A rate-limited request and a dashboard sign-in, so both have reached Redis.
    const models = await fetch(`${api.url}/api/models`, { headers: bearer(keys.predict) });
    assert.equal(models.status, 200);
    const login = await fetch(`${api.url}/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: keys.admin }),
    });
    assert.equal(login.status, 204);
    assert.ok((await admin.keys("*:ratelimit:*")).length >= 1, "the rate limit is kept in Redis");
    assert.ok((await admin.keys("*:session:*")).length >= 1, "the session is recorded in Redis");
    const all = await settled(admin, 1, 2);
    assert.equal(all.filter((c) => c === "xread").length, 1, `clients: ${all.join(", ")}`);
    assert.equal(all.length, 2, `clients: ${all.join(", ")}`);
  });
});
