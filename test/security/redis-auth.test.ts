import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { redisAnswers } from "../../src/supervisor/local-redis.js";
import { testEnv } from "../support/config.js";
import { call, eventually, freePort } from "../support/http.js";
import { spawnCli, spawnWorker, stop, type Spawned } from "../support/processes.js";
import { bearer, testKeys } from "./support.js";

const PASSWORD = "redis-Pa55word-that-must-never-be-logged";
const ACL_PASSWORD = "acl-user-secret-that-must-never-be-logged";
const SESSION_SECRET = "session-secret-that-must-never-be-logged-0123456789";

/**
 * redis-servers of this test's own on free ports, with a default-user password, an ACL user
 * limited to the test's key prefix, and TLS: Inferline must work through each, and no log line
 * of the API or the worker may carry a key, a password or a session secret.
 */
void describe("Redis with a password, an ACL user and TLS; secrets never logged", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "inferline-redis-auth-"));
  const prefix = "secure";
  const keys = testKeys();
  let port = 0;
  let tlsPort = 0;
  let server: ChildProcess;
  let tlsServer: ChildProcess;
  const cert = path.join(dir, "cert.pem");
  const procs: Spawned[] = [];
  before(async () => {
    port = await freePort();
    const acl = path.join(dir, "users.acl");
    writeFileSync(
      acl,
      [
        `user default on >${PASSWORD} ~* &* +@all`,
        // Least privilege: only the deployment's keys, no admin or dangerous commands beyond INFO.
        `user inferline on >${ACL_PASSWORD} ~${prefix}:* &${prefix}:* +@all -@dangerous +info`,
        "",
      ].join("\n"),
    );
    server = spawn(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--aclfile",
        acl,
        "--dir",
        dir,
      ],
      { stdio: "ignore" },
    );
    // The same server behind TLS only (no plain port), with a self-signed certificate the
    // processes trust through NODE_EXTRA_CA_CERTS.
    tlsPort = await freePort();
    const made = spawnSync("openssl", [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-keyout",
      path.join(dir, "key.pem"),
      "-out",
      cert,
    ]);
    assert.equal(made.status, 0, "openssl made a certificate");
    tlsServer = spawn(
      "redis-server",
      [
        "--port",
        "0",
        "--tls-port",
        String(tlsPort),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        path.join(dir, "key.pem"),
        "--tls-ca-cert-file",
        cert,
        "--tls-auth-clients",
        "no",
        "--requirepass",
        PASSWORD,
        "--dir",
        dir,
      ],
      { stdio: "ignore" },
    );
    await eventually(
      () =>
        new Promise<boolean>((resolve) => {
          const socket = connect(tlsPort, "127.0.0.1", () => {
            socket.destroy();
            resolve(true);
          });
          socket.on("error", () => resolve(false));
        }),
    );
    await eventually(() => redisAnswers(`redis://:${PASSWORD}@127.0.0.1:${port}`, 500));
  });
  after(async () => {
    await Promise.all(procs.map((p) => stop(p)));
    server.kill("SIGKILL");
    tlsServer.kill("SIGKILL");
    await sleep(50);
    rmSync(dir, { recursive: true, force: true });
  });

  const run = async (redisUrl: string, extra: Record<string, string> = {}) => {
    const env = testEnv(prefix, {
      ...extra,
      ...keys.env,
      REDIS_URL: redisUrl,
      SESSION_SECRET,
      MODELS: "echo",
      LOG_LEVEL: "trace",
    });
    const api = spawnCli(["api"], env);
    procs.push(api);
    const started = await api.waitForLine((l) => l.event === "api_started", 30_000);
    const url = String(started.url);
    const worker = await spawnWorker({ ...env, LOG_LEVEL: "trace" });
    procs.push(worker);
    return { api, worker, url };
  };

  const exercise = async (url: string) => {
    const done = await call(
      url,
      "POST",
      "/api/ml/echo",
      { text: "through auth" },
      { ...bearer(keys.predict), prefer: "wait=10" },
    );
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(
      (await call(url, "POST", "/api/ml/echo", { text: "x" }, { "x-api-key": keys.admin })).status,
      202,
    );
    assert.equal(
      (await call(url, "POST", "/api/ml/echo", { text: "x" }, bearer(`${keys.predict}-wrong`))).status,
      401,
    );
    const login = await fetch(`${url}/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `key=${keys.admin}`,
      redirect: "manual",
    });
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    await call(url, "GET", "/api/models", undefined, { cookie });
    return cookie;
  };

  const assertNoSecrets = (all: Spawned[], cookie: string) => {
    const secrets = [
      PASSWORD,
      ACL_PASSWORD,
      SESSION_SECRET,
      keys.predict,
      keys.admin,
      cookie.split("=")[1] ?? "x",
    ];
    for (const p of all) {
      const text = p.lines.map((l) => JSON.stringify(l)).join("\n") + p.stderr();
      assert.ok(p.lines.length > 0, "the process logged something");
      for (const s of secrets)
        assert.ok(!text.includes(s), `a secret (${s.slice(0, 6)}…) appears in a log line`);
    }
  };

  void it("works through the default user's password", async () => {
    const { api, worker, url } = await run(`redis://:${PASSWORD}@127.0.0.1:${port}`);
    const cookie = await exercise(url);
    await sleep(300);
    assertNoSecrets([api, worker], cookie);
  });

  void it("works as an ACL user restricted to its key prefix", async () => {
    const { api, worker, url } = await run(`redis://inferline:${ACL_PASSWORD}@127.0.0.1:${port}`);
    const cookie = await exercise(url);
    await sleep(300);
    assertNoSecrets([api, worker], cookie);
  });

  void it("works over TLS (rediss://) with a password", async () => {
    const { api, worker, url } = await run(`rediss://:${PASSWORD}@127.0.0.1:${tlsPort}`, {
      NODE_EXTRA_CA_CERTS: cert,
    });
    const cookie = await exercise(url);
    await sleep(300);
    assertNoSecrets([api, worker], cookie);
  });

  /**
   * Starts `inferline <role>` with a REDIS_URL this Redis refuses: it must exit 1 within a few
   * seconds (not answer 503, or wait, for ever) with a line that names REDIS_URL, and never echo
   * the password.
   */
  const refused = async (role: "api" | "worker", redisUrl: string, why: RegExp) => {
    const env = testEnv(prefix, { ...keys.env, REDIS_URL: redisUrl, MODELS: "echo", LOG_LEVEL: "debug" });
    const p = spawnCli([role], env);
    procs.push(p);
    const exit = await Promise.race([p.exited, sleep(20_000).then(() => undefined)]);
    assert.ok(exit, `${role} still runs with a REDIS_URL Redis refuses`);
    assert.equal(exit.code, 1);
    const text = p.lines.map((l) => JSON.stringify(l)).join("\n") + p.stderr();
    assert.match(p.stderr(), /REDIS_URL/);
    assert.match(p.stderr(), why);
    assert.ok(!text.includes(PASSWORD), "the password appears in its output");
    assert.ok(!text.includes(ACL_PASSWORD), "the password appears in its output");
  };

  void it("a wrong password fails the start, naming REDIS_URL, without echoing it", async () => {
    await refused("api", `redis://:wrong-${PASSWORD}@127.0.0.1:${port}`, /WRONGPASS/);
    await refused("worker", `redis://:wrong-${PASSWORD}@127.0.0.1:${port}`, /WRONGPASS/);
    await refused("api", `redis://inferline:wrong-${ACL_PASSWORD}@127.0.0.1:${port}`, /WRONGPASS/);
  });

  void it("a missing password fails the start, naming REDIS_URL", async () => {
    await refused("api", `redis://127.0.0.1:${port}`, /NOAUTH/);
    await refused("worker", `redis://127.0.0.1:${port}`, /NOAUTH/);
  });

  void it("`inferline start` with a refused REDIS_URL launches nothing and exits 1", async () => {
    const env = testEnv(prefix, {
      ...keys.env,
      REDIS_URL: `redis://:wrong-${PASSWORD}@127.0.0.1:${port}`,
      MODELS: "echo",
      WORKERS: "1",
      AUTOSCALE: "false",
      LOG_LEVEL: "info",
    });
    const start = spawnCli(["start"], env);
    procs.push(start);
    const exit = await Promise.race([start.exited, sleep(30_000).then(() => undefined)]);
    assert.ok(exit, "start still runs with a REDIS_URL Redis refuses");
    assert.equal(exit.code, 1);
    assert.match(start.stderr(), /REDIS_URL.*WRONGPASS|WRONGPASS.*REDIS_URL/);
    const launched = start.lines.filter((l) => l.event === "child_exited" || l.event === "child_gave_up");
    assert.deepEqual(launched, [], "it launched processes that could only fail");
    assert.ok(!(start.stdout() + start.stderr()).includes(PASSWORD));
  });

  void it("a database index the server lacks fails the start instead of using database 0", async () => {
    await refused("api", `redis://:${PASSWORD}@127.0.0.1:${port}/99`, /DB index/);
    await refused("worker", `redis://:${PASSWORD}@127.0.0.1:${port}/99`, /DB index/);
  });
});
