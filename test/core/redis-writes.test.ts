import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import type { QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { queueName } from "../../src/queue/keys.js";
import { JobWaiter } from "../../src/queue/waiter.js";
import { createRedis, waitReady } from "../../src/redis/connection.js";
import { eventually } from "../support/http.js";
import { cleanupPrefix, REDIS_URL, uniquePrefix } from "../support/redis.js";

/** Write system calls this process has made so far (Linux). */
function writeSyscalls(): number {
  const line = readFileSync("/proc/self/io", "utf8")
    .split("\n")
    .find((l) => l.startsWith("syscw:"));
  return Number(line?.split(":")[1]);
}

/** Issues `n` INCRs in one turn of the event loop; returns their replies and the writes made. */
async function burst(redis: Redis, key: string, n: number): Promise<{ replies: number[]; writes: number }> {
  const before = writeSyscalls();
  const replies = await Promise.all(Array.from({ length: n }, () => redis.incr(key)));
  return { replies, writes: writeSyscalls() - before };
}

void describe("Redis connections send one turn's commands in one write", () => {
  const prefix = uniquePrefix("writes");
  let redis: Redis;
  let admin: Redis;

  before(async () => {
    redis = createRedis(REDIS_URL, "command");
    admin = createRedis(REDIS_URL, "command");
    await Promise.all([waitReady(redis, 5000), waitReady(admin, 5000)]);
  });

  after(async () => {
    redis.disconnect();
    admin.disconnect();
    await cleanupPrefix(prefix);
  });

  void it("writes 200 commands of one turn with a handful of system calls, in order", async () => {
    const { replies, writes } = await burst(redis, `${prefix}:n`, 200);
    assert.deepEqual(
      replies,
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    // One write per command would be 200; a few more than one leave room for the test runner.
    assert.ok(writes < 20, `${writes} write system calls for 200 commands`);
  });

  void it("keeps doing so on the socket of a reconnection", async () => {
    const id = await redis.client("ID");
    await admin.client("KILL", "ID", String(id));
    // Commands fail fast while the connection is down (role "command"); wait for the new one.
    await eventually(
      async () => redis.status === "ready" && (await redis.client("ID").catch(() => id)) !== id,
    );
    const { replies, writes } = await burst(redis, `${prefix}:m`, 200);
    assert.equal(replies.at(-1), 200);
    assert.ok(writes < 20, `${writes} write system calls for 200 commands after reconnecting`);
  });
});

void describe("a worker's connections send one callback's commands before the next poll", () => {
  const prefix = uniquePrefix("callback-writes");
  let redis: Redis;

  before(async () => {
    redis = createRedis(REDIS_URL, "blocking", {}, "callback");
    await waitReady(redis, 5000);
  });

  after(async () => {
    redis.disconnect();
    await cleanupPrefix(prefix);
  });

  void it("in a handful of system calls, gone before the turn's immediates run", async () => {
    const before = writeSyscalls();
    // Queued first: with the writes held to the end of the turn, it would run while they wait.
    const heldAtImmediate = new Promise<number>((r) =>
      setImmediate(() => r(redis.stream.writableCorked + redis.stream.writableLength)),
    );
    // Commands issued partly in the callback and partly in a promise reaction it set off.
    const first = Array.from({ length: 100 }, () => redis.incr(`${prefix}:n`));
    const rest = Promise.resolve().then(() => Array.from({ length: 100 }, () => redis.incr(`${prefix}:n`)));
    const replies = await Promise.all([...first, ...(await rest)]);
    const writes = writeSyscalls() - before;
    assert.deepEqual(
      replies,
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    assert.equal(await heldAtImmediate, 0, "the commands were still held when the turn's immediates ran");
    assert.ok(writes < 20, `${writes} write system calls for 200 commands`);
  });
});

void describe("the API's event readers send one turn's commands in one write too", () => {
  const prefix = uniquePrefix("reader-writes");
  let waiter: JobWaiter;
  let admin: Redis;

  before(async () => {
    waiter = new JobWaiter(() => createRedis(REDIS_URL, "blocking"), prefix);
    admin = createRedis(REDIS_URL, "command");
    await Promise.all([waiter.start(["echo"]), waitReady(admin, 5000)]);
  });

  after(async () => {
    await waiter.close();
    admin.disconnect();
    await cleanupPrefix(prefix);
  });

  void it("on the duplicate connection QueueEvents reads on", async () => {
    // QueueEvents reads on a copy of the connection it is given: that copy must be coalesced.
    const readers = (waiter as unknown as { events: Map<string, QueueEvents> }).events;
    const reader = readers.get("echo");
    assert.ok(reader, "no event reader for echo");
    await reader.waitUntilReady();
    const client = (await reader.client) as unknown as Redis;
    const before = writeSyscalls();
    const pings = Promise.all(Array.from({ length: 200 }, () => client.ping()));
    // The turn's writes leave at its end.
    await new Promise((r) => setImmediate(r));
    const writes = writeSyscalls() - before;
    // The reader sits in XREAD, so the pings wait behind it: an event releases them.
    await admin.xadd(`${prefix}:${queueName("echo")}:events`, "*", "event", "probe");
    assert.equal((await pings).length, 200);
    assert.ok(writes < 20, `${writes} write system calls for 200 commands on the event reader`);
  });
});
