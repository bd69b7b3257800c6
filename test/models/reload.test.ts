import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { ReloadFollower } from "../../src/models/reload.js";
import { testConfig, testEnv } from "../support/config.js";
import { call } from "../support/http.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, ownRedis, uniquePrefix } from "../support/redis.js";
import { addPenguinsVersion, ADELIE, predict } from "./reference.js";

void describe("model reload", () => {
  const prefix = uniquePrefix("onnx-reload");
  let repo: string;
  let api: ApiHandle;
  const workers: Spawned[] = [];
  const env = () => testEnv(prefix, { MODEL_REPOSITORY: repo });

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-reload-"));
    await addPenguinsVersion(repo, "1");
    api = await startApi(testConfig(prefix, { MODEL_REPOSITORY: repo }));
    for (let i = 0; i < 2; i++) workers.push(await spawnWorker(env()));
  });
  after(async () => {
    await Promise.all(workers.map((w) => stop(w)));
    await api.close();
    await cleanupPrefix(prefix);
    await rm(repo, { recursive: true, force: true });
  });

  // Keys are off in tests (testEnv); test/security covers the admin scope of this route.
  const reload = () => call(api.url, "POST", "/api/admin/models/reload");

  void it("a broken new version keeps the old one serving, and the response says why", async () => {
    await addPenguinsVersion(repo, "2", { broken: true });
    const r = await reload();
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.status, "partial");
    const failed = r.body.failed as { model: string; version: string; reason: string; worker: string }[];
    assert.equal(failed.length, 2, "both workers report the failure");
    for (const f of failed) {
      assert.equal(f.model, "penguins");
      assert.equal(f.version, "2");
      assert.match(f.reason, /ONNX Runtime could not load/);
    }
    const models = r.body.models as { name: string; latest_version: string }[];
    assert.deepEqual(
      models.find((m) => m.name === "penguins"),
      { name: "penguins", latest_version: "1", versions: ["1"] },
    );
    const p = await predict(api.url, "penguins", ADELIE);
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.equal(p.body.version, "1");
    assert.equal((p.body.result as { label: string }).label, "Adelie");
    const m = await call(api.url, "GET", "/api/models/penguins");
    assert.equal(m.body.latest_version, "1");
  });

  void it("a good new version is loaded by every worker and becomes the latest", async () => {
    await addPenguinsVersion(repo, "3");
    const r = await reload();
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const workersReport = r.body.workers as { loaded: { model: string; version: string }[] }[];
    assert.equal(workersReport.length, 2);
    for (const w of workersReport) assert.deepEqual(w.loaded, [{ model: "penguins", version: "3" }]);
    const p = await predict(api.url, "penguins", { ...ADELIE, body_mass_g: 3751 });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.equal(p.body.version, "3");
    assert.equal((p.body.result as { label: string }).label, "Adelie");
    // The broken version 2 did not come back with this reload: still reported, still not served.
    assert.equal(r.body.status, "partial");
    assert.deepEqual(
      (r.body.failed as { version: string }[]).map((f) => f.version),
      ["2", "2"],
    );
    const m = await call(api.url, "GET", "/api/models/penguins");
    assert.deepEqual(
      (m.body.versions as { version: string }[]).map((v) => v.version),
      ["3", "1"],
    );
    const pinned = await call(api.url, "POST", "/api/ml/penguins?version=2", ADELIE);
    assert.equal(pinned.status, 404, JSON.stringify(pinned.body));
  });

  void it("a new model is not served before a restart: the reload reports it, requests get 404", async () => {
    await addPenguinsVersion(repo, "1", { name: "birds" });
    try {
      const r = await reload();
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const models = r.body.models as { name: string }[];
      assert.deepEqual(
        models.map((m) => m.name),
        ["penguins"],
      );
      const problems = r.body.problems as { path: string; message: string }[];
      const problem = problems.find((p) => p.path === path.join(repo, "birds"));
      assert.match(
        problem?.message ?? "",
        /birds is a new model: it is served once the API and workers restart/,
      );
      // No worker takes its jobs before a restart: refused at once rather than queued for ever.
      const p = await predict(api.url, "birds", ADELIE);
      assert.equal(p.status, 404, JSON.stringify(p.body));
      assert.equal((p.body.error as { code: string }).code, "model_not_found");
    } finally {
      await rm(path.join(repo, "birds"), { recursive: true, force: true });
    }
  });

  void it("a worker started while the newest version is broken serves the one before it", async () => {
    await addPenguinsVersion(repo, "4", { broken: true });
    const late = await spawnWorker(env());
    workers.push(late);
    const failedLine = await late.waitForLine((l) => l.event === "model_load_failed");
    assert.equal(failedLine.version, "4");
    // The API was not told to reload, so it still routes to version 3, which every worker serves.
    await stop(workers[0]!);
    await stop(workers[1]!);
    const p = await predict(api.url, "penguins", { ...ADELIE, body_mass_g: 3752 });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.equal(p.body.version, "3");
  });

  void it("a version whose folder is removed is unloaded by the reload, its session released", async () => {
    const late = workers[2]!;
    const threads = async () => (await readdir(`/proc/${late.proc.pid}/task`)).length;
    // Version 1 is loaded on first use.
    const p = await predict(api.url, "penguins?version=1", { ...ADELIE, body_mass_g: 3753 });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.equal(p.body.version, "1");
    const withV1 = await threads();
    await rm(path.join(repo, "penguins", "1"), { recursive: true });
    const r = await reload();
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const unloaded = await late.waitForLine((l) => l.event === "model_unloaded");
    assert.deepEqual([unloaded.model, unloaded.version], ["penguins", "1"]);
    // The session's thread ends with it.
    for (let i = 0; i < 50 && (await threads()) >= withV1; i++) await sleep(100);
    assert.ok((await threads()) < withV1, `still ${await threads()} threads (${withV1} with version 1)`);
  });
});

void describe("model reload with a worker that does not answer", () => {
  const prefix = uniquePrefix("onnx-reload-silent");
  let repo: string;
  let api: ApiHandle;
  let worker: Spawned;

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-reload-silent-"));
    await addPenguinsVersion(repo, "1");
    api = await startApi(testConfig(prefix, { MODEL_REPOSITORY: repo, MODEL_RELOAD_TIMEOUT_MS: "2000" }));
    worker = await spawnWorker(testEnv(prefix, { MODEL_REPOSITORY: repo }));
  });
  after(async () => {
    worker.kill("SIGCONT");
    await stop(worker);
    await api.close();
    await cleanupPrefix(prefix);
    await rm(repo, { recursive: true, force: true });
  });

  void it("says partial, not reloaded, when a worker it reached never answered", async () => {
    const answered = await call(api.url, "POST", "/api/admin/models/reload");
    assert.equal(answered.status, 200, JSON.stringify(answered.body));
    assert.equal(answered.body.status, "reloaded");
    // A worker busy or hung past MODEL_RELOAD_TIMEOUT_MS: stopped, it still holds its subscription.
    worker.kill("SIGSTOP");
    try {
      await addPenguinsVersion(repo, "2");
      const r = await call(api.url, "POST", "/api/admin/models/reload");
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.status, "partial", JSON.stringify(r.body));
      assert.equal(r.body.unanswered, 1);
      assert.deepEqual(r.body.workers, []);
    } finally {
      worker.kill("SIGCONT");
    }
  });
});

void describe("a job for a version its worker no longer serves", () => {
  // A rolling change of the repository: version 1 was replaced by 2. Worker `moved` has reloaded
  // (it serves 2 only); the API and worker `behind` still see version 1.
  const prefix = uniquePrefix("onnx-reload-rolling");
  let before1: string;
  let after1: string;
  let api: ApiHandle;
  const workers: Spawned[] = [];

  before(async () => {
    before1 = await mkdtemp(path.join(tmpdir(), "inferline-rolling-old-"));
    after1 = await mkdtemp(path.join(tmpdir(), "inferline-rolling-new-"));
    await addPenguinsVersion(before1, "1");
    await addPenguinsVersion(after1, "2");
    // Three attempts, 1 s then 2 s apart: room to hand the job over between them.
    api = await startApi(
      testConfig(prefix, {
        MODEL_REPOSITORY: before1,
        JOB_ATTEMPTS: "3",
        JOB_BACKOFF_MS: "1000",
        JOB_BACKOFF_JITTER: "0",
      }),
    );
  });
  after(async () => {
    await Promise.all(workers.map((w) => stop(w)));
    await api.close();
    await cleanupPrefix(prefix);
    await rm(before1, { recursive: true, force: true });
    await rm(after1, { recursive: true, force: true });
  });

  const submit = async (body_mass_g: number) => {
    const r = await call(api.url, "POST", "/api/ml/penguins?version=1", { ...ADELIE, body_mass_g });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.job_id as string;
  };
  const result = (jobId: string) =>
    call(api.url, "GET", `/api/results/${jobId}`, undefined, { prefer: "wait=20" });

  void it("is retried, and fails version_not_found only on its last attempt", async () => {
    const moved = await spawnWorker(testEnv(prefix, { MODEL_REPOSITORY: after1 }));
    workers.push(moved);
    const jobId = await submit(3761);
    const r = await result(jobId);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.status, "failed", JSON.stringify(r.body));
    assert.equal((r.body.error as { code: string }).code, "version_not_found");
    assert.equal(r.body.attempts, 3, JSON.stringify(r.body));
    await moved.waitForLine((l) => l.event === "job_failed" && l.job_id === jobId);
    const mine = moved.lines.filter((l) => l.job_id === jobId);
    assert.deepEqual(
      mine.filter((l) => l.event === "job_retrying" || l.event === "job_failed").map((l) => l.event),
      ["job_retrying", "job_retrying", "job_failed"],
    );
  });

  void it("is completed by a worker that still serves the version", async () => {
    const moved = workers[0]!;
    const jobId = await submit(3762);
    await moved.waitForLine(
      (l) => l.event === "job_retrying" && l.job_id === jobId && l.code === "version_not_found",
    );
    // The job waits out its backoff; the worker that dropped version 1 leaves, one that serves
    // it arrives and takes the next attempt.
    await stop(moved);
    const behind = await spawnWorker(testEnv(prefix, { MODEL_REPOSITORY: before1 }));
    workers.push(behind);
    const r = await result(jobId);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.status, "completed", JSON.stringify(r.body));
    assert.equal(r.body.version, "1");
    assert.equal((r.body.result as { label: string }).label, "Adelie");
    assert.ok((r.body.attempts as number) >= 2, JSON.stringify(r.body));
    await behind.waitForLine((l) => l.event === "job_completed" && l.job_id === jobId);
  });
});

void describe("model reload across API processes", () => {
  // Two API processes behind one load balancer: the reload request reaches one of them.
  const prefix = uniquePrefix("onnx-reload-fleet");
  let repo: string;
  let asked: ApiHandle;
  let other: ApiHandle;
  let worker: Spawned;

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-reload-fleet-"));
    await addPenguinsVersion(repo, "1");
    asked = await startApi(testConfig(prefix, { MODEL_REPOSITORY: repo }));
    other = await startApi(testConfig(prefix, { MODEL_REPOSITORY: repo }));
    worker = await spawnWorker(testEnv(prefix, { MODEL_REPOSITORY: repo }));
  });
  after(async () => {
    await stop(worker);
    await asked.close();
    await other.close();
    await cleanupPrefix(prefix);
    await rm(repo, { recursive: true, force: true });
  });

  /** GET /api/models/penguins on `api` until `pred` holds of it (fails after 10 s). */
  const until = async (api: ApiHandle, pred: (body: Record<string, unknown>) => boolean) => {
    let body: Record<string, unknown> = {};
    for (let i = 0; i < 100; i++) {
      body = (await call(api.url, "GET", "/api/models/penguins")).body;
      if (pred(body)) return body;
      await sleep(100);
    }
    assert.fail(`never held: ${JSON.stringify(body)}`);
  };
  const versions = (body: Record<string, unknown>) =>
    (body.versions as { version: string }[]).map((v) => v.version).join();

  void it("the other API processes serve what the reload served, without the versions that failed", async () => {
    await addPenguinsVersion(repo, "2");
    await addPenguinsVersion(repo, "3", { broken: true });
    const r = await call(asked.url, "POST", "/api/admin/models/reload");
    assert.equal(r.body.status, "partial", JSON.stringify(r.body));
    await until(other, (b) => b.latest_version === "2" && versions(b) === "2,1");
    const p = await predict(other.url, "penguins", { ...ADELIE, body_mass_g: 3770 });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.equal(p.body.version, "2");
    // As on the process that ran the reload, the failed version is not served even when named.
    const pinned = await call(other.url, "POST", "/api/ml/penguins?version=3", ADELIE);
    assert.equal(pinned.status, 404, JSON.stringify(pinned.body));
  });

  void it("stops routing to a version whose folder the reload found gone", async () => {
    await rm(path.join(repo, "penguins", "1"), { recursive: true });
    const r = await call(asked.url, "POST", "/api/admin/models/reload");
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await until(other, (b) => versions(b) === "2");
    const pinned = await call(other.url, "POST", "/api/ml/penguins?version=1", ADELIE);
    assert.equal(pinned.status, 404, JSON.stringify(pinned.body));
  });
});

void describe("following reloads when Redis refuses the record", () => {
  void it("a process whose record was refused does not follow an older reload instead", async () => {
    // A server of its own: this test makes it refuse writes.
    const own = await ownRedis({ aof: false });
    const redis = new Redis(own.url, { maxRetriesPerRequest: 1 });
    try {
      const followed: string[][] = [];
      const follower = (name: string) =>
        new ReloadFollower(redis, "reload-record", Date.now(), (failed) => {
          followed.push([name, ...failed.map((f) => `${f.model}@${f.version}`)]);
          return Promise.resolve();
        });
      const first = follower("first");
      const other = follower("other");
      await first.check();
      await other.check();
      await other.announce([]);
      await first.check();
      assert.deepEqual(followed, [["first"]], "the other process's reload is followed");
      // Full, with nothing it may evict: writes are refused, reads still answered.
      await redis.config("SET", "maxmemory-policy", "noeviction");
      await redis.config("SET", "maxmemory", "1");
      const failed = [{ model: "penguins", version: "3", reason: "does not load", worker: "w" }];
      await assert.rejects(first.announce(failed), /OOM/);
      await first.check();
      // The record still holds the reload it had followed already: nothing to follow again
      // (that would put back what its own reload just left out).
      assert.deepEqual(followed, [["first"]]);
    } finally {
      redis.disconnect();
      await own.destroy();
    }
  });
});
