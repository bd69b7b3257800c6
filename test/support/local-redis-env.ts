import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { redisAnswers } from "../../src/supervisor/local-redis.js";
import { testEnv } from "./config.js";
import { freePort } from "./http.js";

/**
 * The environment of an `inferline start` with no REDIS_URL, whose own redis-server would listen
 * on a free loopback port with its data in a fresh folder.
 */
export async function localRedisEnv(label: string, extra: Record<string, string> = {}) {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), "inferline-start-"));
  const env = testEnv(label, { LOCAL_REDIS_PORT: String(port), LOCAL_REDIS_DIR: dir, ...extra });
  delete (env as Record<string, string | undefined>).REDIS_URL;
  const url = `redis://127.0.0.1:${port}`;
  return {
    env,
    port,
    url,
    /** Whether a redis-server answers on the port. */
    answers: () => redisAnswers(url, 1000),
    /** Stops a redis-server left answering on the port (a bug's leftover), then removes its data. */
    async cleanup() {
      if (await redisAnswers(url, 500)) {
        const r = new Redis(url);
        await r.shutdown("NOSAVE").catch(() => {});
        r.disconnect();
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
