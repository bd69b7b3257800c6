import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { testEnv } from "../support/config.js";
import { freePort } from "../support/http.js";
import { spawnCli, stop } from "../support/processes.js";
import { uniquePrefix } from "../support/redis.js";

describe("a worker started while Redis is away", () => {
  it("says it waits for Redis, and a SIGTERM meanwhile stops it (exit 0)", async () => {
    // A loopback port nothing listens on: connections are refused at once, for ever.
    const port = await freePort();
    const env = testEnv(uniquePrefix("redis-start"), {
      REDIS_URL: `redis://127.0.0.1:${port}`,
      MODELS: "echo",
      LOG_LEVEL: "info",
    });
    const worker = spawnCli(["worker"], env);
    try {
      const line = await worker.waitForLine((l) => l.event === "redis_unreachable", 30_000);
      assert.equal(line.level, "warn");
      worker.kill("SIGTERM");
      const exit = await Promise.race([worker.exited, sleep(15_000).then(() => undefined)]);
      assert.ok(exit, "the worker still runs 15 s after SIGTERM");
      assert.equal(exit.code, 0, worker.stderr());
    } finally {
      await stop(worker, 1000);
    }
  });
});
