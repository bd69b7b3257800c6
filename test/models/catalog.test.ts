import assert from "node:assert/strict";
import { mkdtemp, mkdir, rename, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { ModelCatalog } from "../../src/models/catalog.js";
import { testConfig } from "../support/config.js";
import { call } from "../support/http.js";
import { cleanupPrefix, uniquePrefix } from "../support/redis.js";
import { addPenguinsVersion, ADELIE, MODELS_DIR } from "./reference.js";

void describe("model catalog", () => {
  const prefix = uniquePrefix("catalog");
  let repo: string;
  let api: ApiHandle;

  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-catalog-"));
    await addPenguinsVersion(repo, "1");
    // A newer version whose input schema no validator can compile: "text" is no JSON Schema type.
    await addPenguinsVersion(repo, "2", {
      edit: (m) => {
        m.input.properties.island!.type = "text";
      },
    });
    api = await startApi(testConfig(prefix, { MODEL_REPOSITORY: repo }));
  });
  after(async () => {
    await api.close();
    await cleanupPrefix(prefix);
    await rm(repo, { recursive: true, force: true });
  });

  void it("reads a repository whose folders are renamed or removed while it is read", async () => {
    // Versions are replaced by two renames and models removed; a rescan may run in between.
    const moving = await mkdtemp(path.join(tmpdir(), "inferline-catalog-moving-"));
    await addPenguinsVersion(moving, "1");
    await addPenguinsVersion(moving, "2");
    const at = (...p: string[]) => path.join(moving, ...p);
    let stop = false;
    const mover = (async () => {
      for (let i = 0; !stop; i++) {
        if (i % 2 === 0) {
          await rename(at("penguins", "2"), at("penguins", ".2"));
          await rename(at("penguins", ".2"), at("penguins", "2"));
        } else {
          await rename(at("penguins"), at(".penguins"));
          await new Promise((r) => setTimeout(r, 1));
          await rename(at(".penguins"), at("penguins"));
        }
      }
    })();
    let seen = 0;
    try {
      for (let i = 0; i < 100; i++) {
        // Never throws for a folder that went away. (A folder that flips back and forth this
        // fast may still be reported once as unreadable; a single replacement is read again.)
        const catalog = await ModelCatalog.load(moving);
        if (catalog.has("penguins")) seen++;
      }
    } finally {
      stop = true;
      await mover;
      await rm(moving, { recursive: true, force: true });
    }
    assert.ok(seen > 0);
  });

  void it("skips a version whose input schema does not compile, naming the problem", async () => {
    const catalog = await ModelCatalog.load(repo);
    assert.deepEqual(
      catalog.versions("penguins").map((d) => d.version),
      ["1"],
    );
    assert.equal(catalog.problems.length, 1);
    assert.equal(catalog.problems[0]!.path, path.join(repo, "penguins", "2"));
    assert.match(catalog.problems[0]!.message, /input.*island/);
  });

  void it("serves the version before it rather than fail every request", async () => {
    const m = await call(api.url, "GET", "/api/models/penguins");
    assert.equal(m.status, 200, JSON.stringify(m.body));
    assert.equal(m.body.latest_version, "1");
    const r = await call(api.url, "POST", "/api/ml/penguins", ADELIE);
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal(r.body.version, "1");
  });

  void it("serves model and version folders that are symbolic links", async () => {
    const root = await mkdtemp(path.join(tmpdir(), "inferline-links-"));
    try {
      // Versions kept elsewhere and linked in, as deployments often do; a whole model linked too.
      const store = path.join(root, "store");
      const linked = path.join(root, "repo");
      await addPenguinsVersion(store, "3");
      await mkdir(path.join(linked, "penguins"), { recursive: true });
      await symlink(path.join(store, "penguins", "3"), path.join(linked, "penguins", "3"), "dir");
      await symlink(path.join(MODELS_DIR, "echo"), path.join(linked, "echo"), "dir");
      const catalog = await ModelCatalog.load(linked);
      assert.deepEqual(catalog.names(), ["echo", "penguins"]);
      assert.equal(catalog.resolve("penguins").version, "3");
      assert.deepEqual(catalog.problems, []);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  void it("takes versions as positive integers: 0, 01 and v2 are problems, not versions", async () => {
    const root = await mkdtemp(path.join(tmpdir(), "inferline-versions-"));
    try {
      for (const v of ["1", "01", "0", "v2"]) await addPenguinsVersion(root, v);
      // Hidden folders are staging (training writes there first): not reported.
      await mkdir(path.join(root, "penguins", ".2.tmp-0a1b"));
      const catalog = await ModelCatalog.load(root);
      assert.deepEqual(
        catalog.versions("penguins").map((d) => d.version),
        ["1"],
      );
      assert.equal(catalog.resolve("penguins").version, "1");
      assert.deepEqual(catalog.problems.map((p) => path.basename(p.path)).sort(), ["0", "01", "v2"]);
      for (const p of catalog.problems) assert.match(p.message, /version.*positive integer/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  void it("skips a version whose labels, preprocessing or onnx section the worker could not use", async () => {
    const root = await mkdtemp(path.join(tmpdir(), "inferline-sections-"));
    type Loose = Record<string, Record<string, unknown>>;
    const broken: [string, (m: Loose) => void, RegExp][] = [
      // Probabilities are keyed by label: one of the three would vanish from every answer.
      [
        "2",
        (m) => (m.output!.labels = ["Adelie", "Adelie", "Gentoo"]),
        /output\.labels: "Adelie" is listed twice/,
      ],
      ["3", (m) => delete m.output!.labels, /output\.labels: a classifier needs two labels or more/],
      ["4", (m) => (m.preprocessing!.type = "one-hot"), /preprocessing\.type/],
      ["5", (m) => (m.onnx!.activation = "sigmoid"), /onnx\.activation/],
      [
        "6",
        (m) => (m.output!.task = "sentiment"),
        /output\.task: an onnx model's task is classification or regression/,
      ],
      // One column per value: which would a repeated one light?
      [
        "7",
        (m) => {
          const features = m.preprocessing!.features as { kind: string; values?: string[] }[];
          const island = features.find((f) => f.kind === "categorical")!;
          island.values = [...island.values!, island.values![0]!];
        },
        /preprocessing\.features\.\d+\.values\.\d+: "Biscoe" is listed twice/,
      ],
      [
        "8",
        (m) => {
          const features = m.preprocessing!.features as unknown[];
          features.push(features[1]);
        },
        /preprocessing\.features\.\d+\.name: "\w+" is listed twice/,
      ],
      // The model file lives in the version folder, never elsewhere on the disk.
      ["9", (m) => ((m.file as unknown) = "../1/model.onnx"), /file: a file name inside the version folder/],
    ];
    try {
      await addPenguinsVersion(root, "1");
      for (const [v, edit] of broken)
        await addPenguinsVersion(root, v, { edit: (m) => edit(m as unknown as Loose) });
      const catalog = await ModelCatalog.load(root);
      assert.deepEqual(
        catalog.versions("penguins").map((d) => d.version),
        ["1"],
      );
      for (const [v, , message] of broken) {
        const problem = catalog.problems.find((p) => path.basename(p.path) === v);
        assert.ok(problem, `version ${v} is reported`);
        assert.match(problem.message, message);
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
