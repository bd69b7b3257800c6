import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { buildConfig, ConfigError } from "../../src/config/index.js";
import { hashKey } from "../../src/security/keys.js";
import { ROOT } from "../support/processes.js";

void describe("secrets in the configuration", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "inferline-secrets-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  void it("reads API_KEYS_FILE (one entry per line, # comments), REDIS_URL_FILE and SESSION_SECRET_FILE", () => {
    const keys = file("keys", `# ops team\n${hashKey("a")}:admin:ops\n\n${hashKey("b")}:predict\n`);
    const cfg = buildConfig({
      API_KEYS_FILE: keys,
      REDIS_URL_FILE: file("redis", "redis://:pw@127.0.0.1:6390\n"),
      SESSION_SECRET_FILE: file("session", "s".repeat(40)),
    });
    assert.deepEqual(cfg.API_KEYS, [
      { hash: hashKey("a"), scope: "admin", name: "ops" },
      { hash: hashKey("b"), scope: "predict", name: hashKey("b").slice(0, 8) },
    ]);
    assert.equal(cfg.redisUrl, "redis://:pw@127.0.0.1:6390");
    assert.equal(cfg.SESSION_SECRET, "s".repeat(40));
  });

  void it("refuses a variable set both ways, an unreadable file, and malformed entries", () => {
    assert.throws(
      () => buildConfig({ API_KEYS: `${hashKey("a")}:admin`, API_KEYS_FILE: file("k2", "") }),
      /set API_KEYS or API_KEYS_FILE/,
    );
    assert.throws(
      () => buildConfig({ SESSION_SECRET_FILE: path.join(dir, "missing") }),
      /SESSION_SECRET_FILE=.*cannot read it \(ENOENT\)/,
    );
    assert.throws(
      () => buildConfig({ API_KEYS: "not-a-hash:admin" }),
      /API_KEYS=.*entry 1 is not <sha256-hex>/,
    );
    assert.throws(() => buildConfig({ API_KEYS: `${hashKey("a")}:root` }), ConfigError);
    // Names as `inferline keys create` makes them: they label logs and rate limits.
    assert.throws(
      () => buildConfig({ API_KEYS: `${hashKey("a")}:admin:bad name!` }),
      /API_KEYS=.*entry 1 is not .*a name is 1 to 64 letters/,
    );
    assert.equal(
      buildConfig({ API_KEYS: `${hashKey("a")}:admin:ops.team-1` }).API_KEYS?.[0]?.name,
      "ops.team-1",
    );
    // One key listed twice: which scope would it have? (The first entry's, before.)
    assert.throws(
      () =>
        buildConfig({
          API_KEYS: `${hashKey("a")}:predict:ci,${hashKey("b")}:admin,${hashKey("a")}:admin:ops`,
        }),
      /API_KEYS=.*entries 1 and 3 are the same key; list each key once/,
    );
  });

  void it("takes a secret file's value as written: only API_KEYS files have comments", () => {
    const secret = "#Qe5!v9Lr2#xT0pW8s&mZ3yB7nK4hJ6dF1";
    assert.equal(
      buildConfig({ SESSION_SECRET_FILE: file("hash-secret", `${secret}\n`) }).SESSION_SECRET,
      secret,
    );
  });

  void it("refuses the placeholder SESSION_SECRET of the shipped examples", () => {
    // Anyone can read these values: a session signed with one would be forgeable.
    const shipped = [
      "deploy/k8s/secret.yaml",
      "deploy/systemd/inferline.env.example",
      "deploy/env.production.example",
    ].map((f) => /SESSION_SECRET[=:]\s*(\S+)/.exec(readFileSync(path.join(ROOT, f), "utf8"))?.[1] ?? f);
    for (const value of shipped) {
      assert.ok(value.length >= 32, value);
      assert.throws(() => buildConfig({ SESSION_SECRET: value }), /SESSION_SECRET=\[redacted\]: .*example/);
      assert.throws(() => buildConfig({ SESSION_SECRET_FILE: file("placeholder", `${value}\n`) }), /example/);
    }
    assert.equal(buildConfig({ SESSION_SECRET: "x".repeat(40) }).SESSION_SECRET, "x".repeat(40));
  });

  void it("refuses the placeholder Redis passwords of the shipped examples", () => {
    const shipped = [
      "deploy/k8s/secret.yaml",
      "deploy/systemd/inferline.env.example",
      "deploy/env.production.example",
    ].map((f) => /REDIS_URL[=:]\s*(\S+)/.exec(readFileSync(path.join(ROOT, f), "utf8"))?.[1] ?? f);
    for (const value of shipped) {
      assert.match(value, /^redis:\/\/:change-me/);
      assert.throws(
        () => buildConfig({ REDIS_URL: value }),
        /REDIS_URL=\[redacted\]: its password is still the example value/,
      );
      assert.throws(
        () => buildConfig({ REDIS_URL_FILE: file("redis-placeholder", `${value}\n`) }),
        /example value/,
      );
    }
    const own = "redis://:a-long-random-password-of-its-own@redis:6379";
    assert.equal(buildConfig({ REDIS_URL: own }).REDIS_URL, own);
    // A cluster's seeds are no URL host: still read, and still checked.
    const seeds = "redis://:change-me@r1:7000,r2:7001?cluster=true";
    assert.throws(() => buildConfig({ REDIS_URL: seeds }), /example value/);
    assert.throws(
      () => buildConfig({ REDIS_URL: "redis://:%E0%A4%A@redis:6379" }),
      (err: Error) =>
        err instanceof ConfigError &&
        /REDIS_URL=\[redacted\]: its user or password is not valid percent-encoding/.test(err.message),
    );
  });

  void it("keeps detailed /health behind a key in the production examples", () => {
    // Through nginx or the ingress, a public /health would name every worker's host and pid.
    for (const f of [
      "deploy/k8s/configmap.yaml",
      "deploy/systemd/inferline.env.example",
      "deploy/env.production.example",
    ]) {
      const value = /HEALTH_PUBLIC[=:]\s*"?(\w+)"?/.exec(readFileSync(path.join(ROOT, f), "utf8"))?.[1];
      assert.ok(value, `${f} sets HEALTH_PUBLIC`);
      assert.equal(buildConfig({ HEALTH_PUBLIC: value }).HEALTH_PUBLIC, false, f);
    }
  });

  void it("never echoes a secret's value in a configuration error", () => {
    const secret = "too-short-session-secret";
    const err = (() => {
      try {
        buildConfig({ SESSION_SECRET: secret, REDIS_URL: "http://user:hunter2@example.com" });
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /SESSION_SECRET=\[redacted\]/);
    assert.match(err.message, /REDIS_URL=\[redacted\]/);
    assert.ok(!err.message.includes(secret) && !err.message.includes("hunter2"));
  });
});
