import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { ModelCatalog } from "../../src/models/catalog.js";
import { ServedVersions } from "../../src/models/served.js";
import type { WorkerRecord } from "../../src/telemetry/workers.js";
import { testConfig, testEnv } from "../support/config.js";
import { call, eventually } from "../support/http.js";
import { spawnWorker, stop, type Spawned } from "../support/processes.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import { addPenguinsVersion, ADELIE, predict } from "./reference.js";

interface VersionEntry {
  version: string;
  workers: number | null;
  load_failed: { worker: string; reason: string }[];
}

void describe("an API started while the newest version is broken", () => {
  const prefix = uniquePrefix("served-broken");
  let repo: string;
  let api: ApiHandle;
  let worker: Spawned;

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-served-broken-"));
    await addPenguinsVersion(repo, "1");
    await addPenguinsVersion(repo, "2", { broken: true });
    // A second model whose only version does not load.
    await addPenguinsVersion(repo, "1", { broken: true, name: "puffins" });
    worker = await spawnWorker(testEnv(prefix, { MODEL_REPOSITORY: repo }));
    const failed = await worker.waitForLine((l) => l.event === "model_load_failed" && l.model === "penguins");
    assert.equal(failed.version, "2");
    // Started after the worker, with no reload since: all it has is the repository and Redis.
    api = await startApi(testConfig(prefix, { MODEL_REPOSITORY: repo }));
  });
  after(async () => {
    await stop(worker);
    await api?.close();
    await cleanupPrefix(prefix);
    await rm(repo, { recursive: true, force: true });
  });

  void it("serves requests without a version from the version the workers serve", async () => {
    for (let i = 0; i < 3; i++) {
      const p = await predict(api.url, "penguins", { ...ADELIE, body_mass_g: 3700 + i });
      assert.equal(p.status, 200, JSON.stringify(p.body));
      assert.equal(p.body.status, "completed", JSON.stringify(p.body));
      assert.equal(p.body.version, "1");
      assert.equal((p.body.result as { label: string }).label, "Adelie");
    }
  });

  void it("says in /api/models which version is the latest, and why not the newest", async () => {
    const m = await call(api.url, "GET", "/api/models/penguins");
    assert.equal(m.status, 200, JSON.stringify(m.body));
    assert.equal(m.body.latest_version, "1");
    const versions = m.body.versions as VersionEntry[];
    assert.deepEqual(
      versions.map((v) => [v.version, v.workers]),
      [
        ["2", 0],
        ["1", 1],
      ],
    );
    const [v2, v1] = versions;
    assert.equal(v2!.load_failed.length, 1, JSON.stringify(v2));
    assert.match(v2!.load_failed[0]!.reason, /ONNX Runtime could not load/);
    assert.ok(!v2!.load_failed[0]!.reason.includes(repo), "paths are told from the repository");
    assert.equal(typeof v2!.load_failed[0]!.worker, "string");
    assert.deepEqual(v1!.load_failed, []);
    const list = await call(api.url, "GET", "/api/models");
    const penguins = (list.body.models as { name: string; latest_version: string }[]).find(
      (x) => x.name === "penguins",
    );
    assert.equal(penguins?.latest_version, "1");
  });

  void it("says in /health that a version failed to load", async () => {
    const h = await call(api.url, "GET", "/health");
    assert.equal(h.body.status, "degraded", JSON.stringify(h.body));
    assert.ok(
      (h.body.reasons as string[]).some(
        (r) => r.includes("failed to load") && r.includes("penguins@2 (1 worker)"),
      ),
      JSON.stringify(h.body.reasons),
    );
  });

  void it("answers a request pinned to the broken version at once, queueing nothing", async () => {
    const r = await call(api.url, "POST", "/api/ml/penguins?version=2", { ...ADELIE, body_mass_g: 3710 });
    assert.equal(r.status, 404, JSON.stringify(r.body));
    const error = r.body.error as { code: string; message: string; details: Record<string, unknown> };
    assert.equal(error.code, "version_not_found");
    assert.match(error.message, /failed to load/);
    assert.deepEqual(error.details.available, ["1"]);
    assert.equal(worker.lines.filter((l) => l.event === "job_started" && l.version === "2").length, 0);
  });

  void it("refuses a model none of whose versions loads, also after a reload, and says why", async () => {
    for (const round of ["before a reload", "after a reload"]) {
      if (round === "after a reload") {
        const r = await call(api.url, "POST", "/api/admin/models/reload");
        assert.equal(r.status, 200, JSON.stringify(r.body));
      }
      const r = await call(api.url, "POST", "/api/ml/puffins", ADELIE);
      assert.equal(r.status, 404, `${round}: ${JSON.stringify(r.body)}`);
      const error = r.body.error as { code: string; message: string };
      assert.equal(error.code, "version_not_found");
      assert.match(error.message, /no version of it loads in any worker/);
      const m = await call(api.url, "GET", "/api/models/puffins");
      const v1 = (m.body.versions as VersionEntry[]).find((v) => v.version === "1");
      assert.equal(v1?.workers, 0, round);
      assert.match(v1?.load_failed[0]?.reason ?? "", /ONNX Runtime could not load/, round);
    }
  });
});

void describe("an API started before the workers have loaded the newest version", () => {
  const prefix = uniquePrefix("served-behind");
  let repo: string;
  let api: ApiHandle;
  let worker: Spawned;

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-served-behind-"));
    await addPenguinsVersion(repo, "1");
    worker = await spawnWorker(testEnv(prefix, { MODEL_REPOSITORY: repo }));
    // Version 2 arrives after the worker scanned the repository; a fresh API sees it.
    await addPenguinsVersion(repo, "2");
    api = await startApi(testConfig(prefix, { MODEL_REPOSITORY: repo }));
  });
  after(async () => {
    await stop(worker);
    await api?.close();
    await cleanupPrefix(prefix);
    await rm(repo, { recursive: true, force: true });
  });

  void it("routes to the version the workers serve until a reload loads the new one", async () => {
    const p = await predict(api.url, "penguins", { ...ADELIE, body_mass_g: 3720 });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.equal(p.body.status, "completed", JSON.stringify(p.body));
    assert.equal(p.body.version, "1");
    // Pinned to a version no worker has tried: queued as before (a reload may be on its way).
    const pinned = await call(api.url, "POST", "/api/ml/penguins?version=2", {
      ...ADELIE,
      body_mass_g: 3721,
    });
    assert.equal(pinned.status, 202, JSON.stringify(pinned.body));
    const r = await call(api.url, "POST", "/api/admin/models/reload");
    assert.equal(r.body.status, "reloaded", JSON.stringify(r.body));
    // The reload is over: the next request goes to the new version at once.
    const q = await predict(api.url, "penguins", { ...ADELIE, body_mass_g: 3722 });
    assert.equal(q.status, 200, JSON.stringify(q.body));
    assert.equal(q.body.status, "completed", JSON.stringify(q.body));
    assert.equal(q.body.version, "2");
    const m = await call(api.url, "GET", "/api/models/penguins");
    assert.equal(m.body.latest_version, "2");
  });
});

void describe("an API started before any worker, with the newest version broken", () => {
  // `inferline start` and a fresh compose stack start the API and the workers together.
  const prefix = uniquePrefix("served-first");
  let repo: string;
  let api: ApiHandle;
  let worker: Spawned | undefined;

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-served-first-"));
    await addPenguinsVersion(repo, "1");
    await addPenguinsVersion(repo, "2", { broken: true });
    // Its regular reading of the heartbeats is a minute apart: far beyond this test's waits.
    api = await startApi(
      testConfig(prefix, { MODEL_REPOSITORY: repo, WORKER_HEARTBEAT_INTERVAL_MS: "60000" }),
    );
  });
  after(async () => {
    if (worker) await stop(worker);
    await api?.close();
    await cleanupPrefix(prefix);
    await rm(repo, { recursive: true, force: true });
  });

  void it("routes to the version the first worker serves as soon as it runs", async () => {
    const before = await call(api.url, "GET", "/api/models/penguins");
    assert.equal(before.body.latest_version, "2", "with no worker yet, the newest in the repository");
    worker = await spawnWorker(testEnv(prefix, { MODEL_REPOSITORY: repo }));
    let latest: unknown;
    for (let i = 0; i < 100 && latest !== "1"; i++) {
      if (i > 0) await sleep(100);
      latest = (await call(api.url, "GET", "/api/models/penguins")).body.latest_version;
    }
    assert.equal(latest, "1", "still routing to the broken version 10 s after the worker started");
    const p = await predict(api.url, "penguins", { ...ADELIE, body_mass_g: 3730 });
    assert.equal(p.body.status, "completed", JSON.stringify(p.body));
    assert.equal(p.body.version, "1");
  });
});

void describe("an older version that fails to load when a job first asks for it", () => {
  const prefix = uniquePrefix("served-old-broken");
  let repo: string;
  let api: ApiHandle;
  let worker: Spawned;

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-served-old-broken-"));
    // Only the newest version is loaded at start: version 1 is first tried by a job pinned to it.
    await addPenguinsVersion(repo, "1", { broken: true });
    await addPenguinsVersion(repo, "2");
    worker = await spawnWorker(testEnv(prefix, { MODEL_REPOSITORY: repo }));
    api = await startApi(testConfig(prefix, { MODEL_REPOSITORY: repo }));
  });
  after(async () => {
    await stop(worker);
    await api?.close();
    await cleanupPrefix(prefix);
    await rm(repo, { recursive: true, force: true });
  });

  void it("fails that job, then is refused at once and said to have failed, also after a reload", async () => {
    const first = await call(api.url, "POST", "/api/ml/penguins?version=1", ADELIE, { prefer: "wait=20" });
    assert.equal(first.body.status, "failed", JSON.stringify(first.body));
    assert.equal(worker.lines.filter((l) => l.event === "model_load_failed" && l.version === "1").length, 1);
    for (const round of ["after the job", "after a reload"]) {
      if (round === "after a reload") {
        const r = await call(api.url, "POST", "/api/admin/models/reload");
        assert.equal(r.status, 200, JSON.stringify(r.body));
      }
      const refused = await eventually(async () => {
        const r = await call(api.url, "POST", "/api/ml/penguins?version=1", ADELIE);
        return r.status === 404 ? r : undefined;
      }, 5_000);
      assert.equal((refused.body.error as { code: string }).code, "version_not_found", round);
      const m = await call(api.url, "GET", "/api/models/penguins");
      const v1 = (m.body.versions as VersionEntry[]).find((v) => v.version === "1");
      // Listed with the worker's reason; the reload, which the worker answers with it, leaves it out.
      if (round === "after the job")
        assert.match(v1?.load_failed[0]?.reason ?? "", /ONNX Runtime could not load/, JSON.stringify(m.body));
      else assert.equal(v1, undefined, JSON.stringify(m.body));
      const p = await predict(api.url, "penguins", ADELIE);
      assert.equal(p.body.version, "2", round);
    }
  });
});

void describe("which version the fleet's heartbeats route to", () => {
  let repo: string;
  let catalog: ModelCatalog;

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-served-rules-"));
    for (const v of ["1", "2", "3"]) await addPenguinsVersion(repo, v);
    catalog = await ModelCatalog.load(repo);
  });
  after(() => rm(repo, { recursive: true, force: true }));

  const worker = (id: string, over: Partial<WorkerRecord> = {}): WorkerRecord => ({
    id,
    pid: 1,
    host: "h",
    models: ["penguins"],
    state: "running",
    started_at: "",
    last_seen: "",
    processed: 0,
    failed: 0,
    rss_bytes: 0,
    event_loop_delay_p99_ms: 0,
    ...over,
  });
  const failed = (version: string) => [{ model: "penguins", version, reason: "does not load" }];
  const view = async (records: WorkerRecord[]) => {
    const v = new ServedVersions(catalog, () => Promise.resolve(records));
    await v.refresh();
    return v;
  };

  void it("the newest in the repository while no live worker reports its versions", async () => {
    for (const records of [
      [],
      [worker("old")], // a worker of an older release: no versions in its record
      [worker("draining", { state: "draining", versions: { penguins: ["1"] } })],
    ])
      assert.equal((await view(records)).latest("penguins").version, "3", JSON.stringify(records));
  });

  void it("skips a version any live worker failed to load, but serves it when pinned while one serves it", async () => {
    const v = await view([
      worker("a", { versions: { penguins: ["2", "1"] }, load_failed: failed("3") }),
      worker("b", { versions: { penguins: ["3", "2", "1"] } }),
    ]);
    assert.equal(v.latest("penguins").version, "2");
    assert.equal(v.resolve("penguins", "3").version, "3");
    assert.deepEqual(v.describe("penguins", "3"), {
      workers: 1,
      load_failed: [{ worker: "a", reason: "does not load" }],
    });
  });

  void it("refuses a pinned version only when every live worker of the model failed it", async () => {
    const everywhere = await view([
      worker("a", { versions: { penguins: ["2", "1"] }, load_failed: failed("3") }),
      worker("b", { versions: { penguins: ["2", "1"] }, load_failed: failed("3") }),
    ]);
    assert.throws(
      () => everywhere.resolve("penguins", "3"),
      (err: Error & { code?: string; details?: { available?: string[] } }) =>
        err.code === "version_not_found" && err.details?.available?.join() === "2,1",
    );
    // A live worker that does not say what it serves may serve it.
    const unknown = await view([
      worker("a", { versions: { penguins: ["2", "1"] }, load_failed: failed("3") }),
      worker("old"),
    ]);
    assert.equal(unknown.resolve("penguins", "3").version, "3");
    assert.equal(unknown.latest("penguins").version, "2");
  });

  void it("refuses a model none of whose versions loads in any worker, pinned or not", async () => {
    // Each worker tried every version, newest first, and so took none of the model's jobs.
    const all = [...failed("3"), ...failed("2"), ...failed("1")];
    const nowhere = await view([
      worker("a", { models: [], versions: {}, load_failed: all }),
      worker("b", { models: [], versions: {}, load_failed: all }),
    ]);
    for (const version of [undefined, "3", "1"])
      assert.throws(
        () => nowhere.resolve("penguins", version),
        (err: Error & { code?: string; details?: { available?: string[] } }) =>
          err.code === "version_not_found" && err.details?.available?.length === 0,
        `version ${version}`,
      );
    assert.deepEqual(nowhere.describe("penguins", "1"), {
      workers: 0,
      load_failed: [
        { worker: "a", reason: "does not load" },
        { worker: "b", reason: "does not load" },
      ],
    });
    // One worker that serves it is enough.
    const somewhere = await view([
      worker("a", { models: [], versions: {}, load_failed: all }),
      worker("b", { versions: { penguins: ["1"] }, load_failed: failed("3").concat(failed("2")) }),
    ]);
    assert.equal(somewhere.resolve("penguins").version, "1");
    assert.equal(somewhere.resolve("penguins", "1").version, "1");
  });

  void it("keeps the last view when the heartbeats cannot be read", async () => {
    let records: Promise<WorkerRecord[]> = Promise.resolve([
      worker("a", { versions: { penguins: ["2", "1"] }, load_failed: failed("3") }),
    ]);
    const errors: string[] = [];
    const v = new ServedVersions(catalog, () => records, { onError: (e) => errors.push(e.message) });
    await v.refresh();
    records = Promise.reject(new Error("Connection is closed."));
    await v.refresh();
    assert.deepEqual(errors, ["Connection is closed."]);
    assert.equal(v.latest("penguins").version, "2");
  });
});
