import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { testConfig } from "../support/config.js";
import { eventually } from "../support/http.js";
import { ownRedis, uniquePrefix, type OwnRedis } from "../support/redis.js";

/** The clients connected to a Redis, by the last command each ran. */
async function clients(admin: Redis): Promise<string[]> {
  const list = (await admin.client("LIST")) as string;
  const self = String(await admin.client("ID"));
  return list
    .split("\n")
    .filter((l) => l.length > 0 && !l.startsWith(`id=${self} `))
    .map((l) => /cmd=(\S+)/.exec(l)?.[1] ?? "?");
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
    await eventually(async () => {
      const now = await clients(admin);
      return now.filter((c) => c === "xread").length === 2 && now.length === 3;
    }).catch(() => {});
    const all = await clients(admin);
    assert.equal(all.filter((c) => c === "xread").length, 2, `clients: ${all.join(", ")}`);
    assert.equal(all.length, 3, `clients: ${all.join(", ")}`);
  });
});
