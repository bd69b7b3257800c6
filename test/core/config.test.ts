import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { parse } from "dotenv";
import { buildConfig, ConfigError, ENV_SCHEMA } from "../../src/config/index.js";
import { parseRedisUrl } from "../../src/redis/connection.js";

describe("config", () => {
  it("applies documented defaults and freezes the result", () => {
    const c = buildConfig({});
    assert.equal(c.PORT, 3000);
    assert.equal(c.redisUrl, "redis://127.0.0.1:6379");
    assert.equal(c.redisUrlFromEnv, false);
    assert.ok(Object.isFrozen(c));
    assert.throws(() => ((c as { PORT: number }).PORT = 1));
  });

  it("names every bad variable", () => {
    try {
      buildConfig({ PORT: "99999", REDIS_URL: "http://x", WORKER_CONCURRENCY: "many" });
      assert.fail("should throw");
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      const text = err.message;
      for (const v of ["PORT", "REDIS_URL", "WORKER_CONCURRENCY"]) assert.match(text, new RegExp(v));
    }
  });

  it("takes a log level in any case, and names the levels when it is none", () => {
    assert.equal(buildConfig({ LOG_LEVEL: "WARN" }).LOG_LEVEL, "warn");
    assert.equal(buildConfig({ LOG_LEVEL: "Debug" }).LOG_LEVEL, "debug");
    assert.throws(() => buildConfig({ LOG_LEVEL: "loud" }), /LOG_LEVEL="loud": .*"warn"/);
  });

  it("refuses a REDIS_URL that names no host or a port that is none, rather than guess", () => {
    // ioredis reads an empty host as 127.0.0.1:6379: another Redis than the one meant.
    for (const url of [
      "redis://",
      "redis://:secret@/0",
      "redis://127.0.0.1:notaport",
      "redis://127.0.0.1:99999",
      "redis://redis:0",
      "redis://[::1",
      "redis://r1:7000,:7001?cluster=true",
      "redis://r1:0x1b58,r2:7001?cluster=true",
    ])
      assert.throws(
        () => buildConfig({ REDIS_URL: url }),
        (err: Error) =>
          err instanceof ConfigError &&
          /REDIS_URL=\[redacted\]: must name a host, and a port/.test(err.message),
        url,
      );
    for (const url of [
      "redis://localhost",
      "redis://[::1]",
      "rediss://user:pw@[fd00::1]:6380/2",
      "redis://r1:7000,r2:7001?cluster=true",
      "redis://s1:26379,s2?sentinel=main",
    ])
      assert.equal(buildConfig({ REDIS_URL: url }).REDIS_URL, url);
    assert.deepEqual(parseRedisUrl("redis://[::1]").nodes, [{ host: "::1", port: 6379 }]);
    // Seeds listed with spaces after the commas, as people write lists.
    assert.deepEqual(parseRedisUrl("redis://s1:26379, s2:26380?sentinel=main").nodes, [
      { host: "s1", port: 26379 },
      { host: "s2", port: 26380 },
    ]);
    assert.deepEqual(parseRedisUrl("redis://a,[fd00::1]:7001").nodes, [
      { host: "a", port: 6379 },
      { host: "fd00::1", port: 7001 },
    ]);
  });

  it("checks TRUST_PROXY entries at boot, naming the variable and the entry at fault", () => {
    assert.equal(buildConfig({}).TRUST_PROXY, false);
    assert.equal(buildConfig({ TRUST_PROXY: "true" }).TRUST_PROXY, true);
    assert.equal(
      buildConfig({ TRUST_PROXY: " 10.0.0.0/8, 127.0.0.1 ,::1,fd00::/8,loopback,192.168.0.0/255.255.0.0" })
        .TRUST_PROXY,
      "10.0.0.0/8,127.0.0.1,::1,fd00::/8,loopback,192.168.0.0/255.255.0.0",
    );
    for (const [value, entry] of [
      ["nginx", "nginx"],
      ["10.0.0.1, 10.0.0.0/33", "10.0.0.0/33"],
      ["1", "1"],
      ["yes", "yes"],
      [",", ","],
    ]) {
      assert.throws(
        () => buildConfig({ TRUST_PROXY: value }),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.message.includes(`TRUST_PROXY=${JSON.stringify(value)}`) &&
          err.message.includes(JSON.stringify(entry)),
        value,
      );
    }
  });

  it("env.example copied to .env as it is configures the defaults", () => {
    const example = parse(readFileSync(new URL("../../env.example", import.meta.url), "utf8"));
    assert.ok(Object.keys(example).length > 20, "env.example sets the variables that have a default");
    assert.deepEqual(buildConfig(example), buildConfig({}));
  });

  it("refuses autoscaler thresholds that would make it flap, naming both variables", () => {
    for (const env of [
      { AUTOSCALE_UP_QUEUE_DEPTH: "5", AUTOSCALE_DOWN_QUEUE_DEPTH: "20" },
      { AUTOSCALE_UP_QUEUE_DEPTH: "10", AUTOSCALE_DOWN_QUEUE_DEPTH: "10" },
      { AUTOSCALE_UP_QUEUE_DEPTH: "5" },
    ]) {
      assert.throws(
        () => buildConfig(env),
        (err: unknown) =>
          err instanceof ConfigError &&
          /AUTOSCALE_DOWN_QUEUE_DEPTH/.test(err.message) &&
          /AUTOSCALE_UP_QUEUE_DEPTH/.test(err.message),
        JSON.stringify(env),
      );
    }
    assert.equal(buildConfig({ AUTOSCALE_UP_QUEUE_DEPTH: "11" }).AUTOSCALE_DOWN_QUEUE_DEPTH, 10);
  });

  it("refuses an autoscaler minimum above its maximum, naming both variables", () => {
    for (const env of [
      { AUTOSCALE_MIN_WORKERS: "5", AUTOSCALE_MAX_WORKERS: "3" },
      { AUTOSCALE_MIN_WORKERS: "64", AUTOSCALE_MAX_WORKERS: "1" },
    ]) {
      assert.throws(
        () => buildConfig(env),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.message.includes(`AUTOSCALE_MIN_WORKERS="${env.AUTOSCALE_MIN_WORKERS}"`) &&
          err.message.includes(`AUTOSCALE_MAX_WORKERS (${env.AUTOSCALE_MAX_WORKERS})`),
        JSON.stringify(env),
      );
    }
    const bounds = (env: Record<string, string>) => {
      const c = buildConfig(env);
      return [c.AUTOSCALE_MIN_WORKERS, c.AUTOSCALE_MAX_WORKERS];
    };
    assert.deepEqual(bounds({}), [2, 10]);
    assert.deepEqual(bounds({ AUTOSCALE_MIN_WORKERS: "3", AUTOSCALE_MAX_WORKERS: "3" }), [3, 3]);
    // One set alone never contradicts the other's default: that default follows it.
    assert.deepEqual(bounds({ AUTOSCALE_MAX_WORKERS: "1" }), [1, 1]);
    assert.deepEqual(bounds({ AUTOSCALE_MAX_WORKERS: "5" }), [2, 5]);
    assert.deepEqual(bounds({ AUTOSCALE_MIN_WORKERS: "20" }), [20, 20]);
    assert.deepEqual(bounds({ AUTOSCALE_MIN_WORKERS: "4" }), [4, 10]);
    // A bad value is named as such, not as a contradiction.
    assert.throws(
      () => buildConfig({ AUTOSCALE_MAX_WORKERS: "0" }),
      (err: unknown) =>
        err instanceof ConfigError &&
        /AUTOSCALE_MAX_WORKERS="0"/.test(err.message) &&
        !/must not be above/.test(err.message),
    );
  });

  it("refuses a hang timeout shorter than three heartbeats, naming both variables", () => {
    assert.throws(
      () => buildConfig({ WORKER_HEARTBEAT_INTERVAL_MS: "1000", WORKER_HANG_TIMEOUT_MS: "2000" }),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.message.includes('WORKER_HANG_TIMEOUT_MS="2000"') &&
        err.message.includes("WORKER_HEARTBEAT_INTERVAL_MS (3000)"),
    );
    const timeout = (env: Record<string, string>) => buildConfig(env).WORKER_HANG_TIMEOUT_MS;
    assert.equal(timeout({}), 60_000);
    assert.equal(timeout({ WORKER_HANG_TIMEOUT_MS: "0", WORKER_HEARTBEAT_INTERVAL_MS: "60000" }), 0);
    assert.equal(timeout({ WORKER_HANG_TIMEOUT_MS: "3000", WORKER_HEARTBEAT_INTERVAL_MS: "1000" }), 3000);
    // A long heartbeat interval set alone moves the default with it instead of being refused.
    assert.equal(timeout({ WORKER_HEARTBEAT_INTERVAL_MS: "60000" }), 720_000);
    assert.equal(timeout({ WORKER_HEARTBEAT_INTERVAL_MS: "500" }), 60_000);
  });

  it("treats empty strings as unset", () => {
    assert.equal(buildConfig({ PORT: "" }).PORT, 3000);
  });

  it("every variable is described and listed in env.example", () => {
    const example = readFileSync("env.example", "utf8");
    for (const [name, schema] of Object.entries(ENV_SCHEMA)) {
      assert.ok(schema.description && schema.description.length > 10, `${name} has a description`);
      assert.match(example, new RegExp(`^#? ?${name}=`, "m"), `${name} in env.example`);
    }
  });
});
