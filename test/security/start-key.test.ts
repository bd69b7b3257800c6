import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { testEnv } from "../support/config.js";
import { call, eventually } from "../support/http.js";
import { spawnCli, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";

void describe("inferline start and API keys", () => {
  const prefix = uniquePrefix("sec-start");
  const procs: Spawned[] = [];
  after(async () => {
    await Promise.all(procs.map((p) => stop(p)));
    await cleanupPrefix(prefix);
  });
  const start = (extra: Record<string, string>) => {
    const env = testEnv(prefix, {
      WORKERS: "0",
      AUTOSCALE: "false",
      MODELS: "echo",
      LOG_LEVEL: "warn",
      ...extra,
    });
    const proc = spawnCli(["start"], env);
    procs.push(proc);
    return proc;
  };

  void it("with no keys configured, makes an admin key for the run and prints it in the banner", async () => {
    const proc = start({ AUTH_DISABLED: "false" });
    const [url, key] = await eventually(async () => {
      const text = proc.stderr();
      const u = /Inferline is up: (http:\/\/\S+)/.exec(text)?.[1];
      const k = /export INFERLINE_API_KEY=(ilk_\S+)/.exec(text)?.[1];
      return u && k ? ([u, k] as const) : undefined;
    }, 30_000);
    assert.match(proc.stderr(), /-H "Authorization: Bearer \$INFERLINE_API_KEY"/);
    assert.equal((await call(url, "GET", "/api/models")).status, 401);
    assert.equal(
      (await call(url, "GET", "/api/models", undefined, { authorization: `Bearer ${key}` })).status,
      200,
    );
    const admin = await call(url, "GET", "/api/admin/jobs", undefined, { "x-api-key": key });
    assert.ok(admin.status !== 401 && admin.status !== 403, `admin scope: ${admin.status}`);
  });

  void it("with AUTH_DISABLED=true, says so in the banner", async () => {
    const proc = start({ AUTH_DISABLED: "true" });
    await eventually(async () => /Inferline is up/.test(proc.stderr()), 30_000);
    assert.match(proc.stderr(), /auth\s+OFF \(AUTH_DISABLED=true\)/);
    assert.doesNotMatch(proc.stderr(), /INFERLINE_API_KEY/);
  });
});
