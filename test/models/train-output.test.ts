import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setImmediate as nextTurn, setTimeout as sleep } from "node:timers/promises";
import { ModelCatalog, readDescriptor } from "../../src/models/catalog.js";
import type { TabularPreprocessing } from "../../src/models/preprocess/tabular.js";
import { recipe, type Recipe } from "../../src/training/recipes.js";
import { trainRecipe } from "../../src/training/train.js";
import { MODELS_DIR } from "./reference.js";

// One epoch: a model unlike the committed one (which a reader must never see mixed with it),
// quickly; written whatever its accuracy.
const penguins: Recipe = {
  ...recipe("penguins"),
  training: { ...recipe("penguins").training, epochs: 1 },
  threshold: { metric: "accuracy", min: 0 },
};
const TRAINED_AT = new Date("2030-01-02T03:04:05.000Z");

/**
 * One look at `<repo>/penguins/1` as a worker's rescan would take it: which version it holds,
 * "absent", or "swapped" when the folder was renamed while being read (the look saw two folders,
 * neither of them partial). The renames run on other threads, so they can land mid-look.
 */
function look(dir: string): string {
  const inode = () => {
    try {
      return statSync(dir).ino;
    } catch {
      return undefined;
    }
  };
  const first = inode();
  if (first === undefined) return "absent";
  let seen: string;
  try {
    const names = readdirSync(dir).sort();
    const manifest = JSON.parse(readFileSync(path.join(dir, "manifest.json"), "utf8")) as {
      training: { trained_at: string };
    };
    const model = createHash("sha256")
      .update(readFileSync(path.join(dir, "model.onnx")))
      .digest("hex");
    seen = `${names.join(",")} ${manifest.training.trained_at} ${model}`;
  } catch (err) {
    seen = `partial: ${(err as Error).message}`;
  }
  return inode() === first ? seen : "swapped";
}

/**
 * Trains penguins into `repo` while a reader looks at the version folder on every turn of the
 * event loop (the writes in between are asynchronous); returns what it saw.
 */
async function trainWatched(repo: string): Promise<Set<string>> {
  const dir = path.join(repo, "penguins", "1");
  const seen = new Set<string>([look(dir)]);
  let done = false;
  const reader = (async () => {
    while (!done) {
      seen.add(look(dir));
      await nextTurn();
    }
  })();
  try {
    await trainRecipe(penguins, repo, { progress: false, now: TRAINED_AT });
  } finally {
    done = true;
    await reader;
  }
  seen.add(look(dir));
  return seen;
}

void describe("inferline train writes a version whole", () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), "inferline-train-output-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  void it("a new version appears complete, with nothing left beside it", async () => {
    const repo = path.join(root, "fresh");
    const seen = await trainWatched(repo);
    const final = look(path.join(repo, "penguins", "1"));
    assert.match(final, /^manifest\.json,model\.onnx 2030-01-02T03:04:05\.000Z [0-9a-f]{64}$/);
    assert.deepEqual(
      [...seen].filter((s) => s !== final && s !== "absent"),
      [],
    );
    assert.deepEqual(await readdir(path.join(repo, "penguins")), ["1"]);
    const d = await readDescriptor(path.join(repo, "penguins", "1"), "penguins", "1");
    assert.equal(d.version, "1");
  });

  void it("an existing version is replaced whole: a reader sees the old one or the new one", async () => {
    const repo = path.join(root, "existing");
    const dir = path.join(repo, "penguins", "1");
    await cp(path.join(MODELS_DIR, "penguins", "1"), dir, { recursive: true });
    await writeFile(path.join(dir, "notes.txt"), "left by the previous version");
    const old = look(dir);
    const seen = await trainWatched(repo);
    const final = look(dir);
    assert.notEqual(final, old);
    assert.match(final, /^manifest\.json,model\.onnx 2030-01-02T03:04:05\.000Z /, "the old files are gone");
    // "absent": the instant between renaming the old folder aside and the new one in.
    const allowed = new Set([old, final, "absent", "swapped"]);
    assert.deepEqual(
      [...seen].filter((s) => !allowed.has(s)),
      [],
    );
    assert.deepEqual(await readdir(path.join(repo, "penguins")), ["1"]);
  });

  void it("a version that is a link is replaced by a folder, and what it pointed to is kept", async () => {
    const repo = path.join(root, "linked");
    const target = path.join(root, "elsewhere");
    await cp(path.join(MODELS_DIR, "penguins", "1"), target, { recursive: true });
    await cp(path.join(MODELS_DIR, "penguins"), path.join(repo, "penguins"), {
      recursive: true,
      filter: (src) => src === path.join(MODELS_DIR, "penguins"),
    });
    await symlink(target, path.join(repo, "penguins", "1"));
    await trainRecipe(penguins, repo, { progress: false, now: TRAINED_AT });
    assert.match(look(path.join(repo, "penguins", "1")), / 2030-01-02T03:04:05\.000Z /);
    assert.deepEqual((await readdir(target)).sort(), ["manifest.json", "model.onnx"]);
    const kept = await readFile(path.join(target, "model.onnx"));
    assert.ok(
      kept.equals(await readFile(path.join(MODELS_DIR, "penguins", "1", "model.onnx"))),
      "target untouched",
    );
    assert.deepEqual(await readdir(path.join(repo, "penguins")), ["1"]);
  });
});

void describe("inferline train --model-version", () => {
  let repo: string;
  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-train-version-"));
    await cp(path.join(MODELS_DIR, "penguins", "1"), path.join(repo, "penguins", "1"), { recursive: true });
  });
  after(async () => {
    await rm(repo, { recursive: true, force: true });
  });

  void it("writes a new version beside version 1, which a rescan serves as the latest", async () => {
    const before = await readFile(path.join(repo, "penguins", "1", "model.onnx"));
    await trainRecipe(penguins, repo, { progress: false, now: TRAINED_AT, version: "2" });
    assert.deepEqual((await readdir(path.join(repo, "penguins"))).sort(), ["1", "2"]);
    assert.ok(
      before.equals(await readFile(path.join(repo, "penguins", "1", "model.onnx"))),
      "version 1 untouched",
    );
    const catalog = await ModelCatalog.load(repo);
    assert.equal(catalog.resolve("penguins").version, "2");
    assert.deepEqual(
      catalog.versions("penguins").map((d) => d.version),
      ["2", "1"],
    );
  });

  void it("refuses a version that is not a version folder's name, before training", () => {
    const cli = train("penguins", "--repository", repo, "--model-version", "02");
    assert.notEqual(cli.status, 0);
    assert.match(cli.stderr, /--model-version.*positive integer without leading zeros/);
    assert.equal(existsSync(path.join(repo, "penguins", "02")), false);
  });

  void it("--evaluate of a version that is not there says so, and how to make it", () => {
    const cli = train("penguins", "--repository", repo, "--model-version", "7", "--evaluate");
    assert.equal(cli.status, 1, cli.stderr);
    assert.match(cli.stderr, /penguins has no version 7 in .* to evaluate/);
    assert.match(cli.stderr, /inferline train penguins --model-version 7/);
    assert.doesNotMatch(cli.stderr, /ENOENT|at .*\.ts:\d+/);
  });
});

void describe("inferline train writes only what serves", () => {
  let repo: string;
  let committed: string;
  before(async () => {
    repo = await mkdtemp(path.join(tmpdir(), "inferline-train-checks-"));
    await cp(path.join(MODELS_DIR, "penguins", "1"), path.join(repo, "penguins", "1"), { recursive: true });
    committed = look(path.join(repo, "penguins", "1"));
  });
  after(async () => {
    await rm(repo, { recursive: true, force: true });
  });

  void it("a model that misses its held-out threshold replaces nothing and adds nothing", async () => {
    const unreachable: Recipe = { ...penguins, threshold: { metric: "accuracy", min: 1.01 } };
    for (const version of ["1", "2"]) {
      const report = await trainRecipe(unreachable, repo, { progress: false, now: TRAINED_AT, version });
      assert.equal(report.passed, false);
      assert.equal(report.written, false);
    }
    assert.equal(look(path.join(repo, "penguins", "1")), committed);
    assert.deepEqual(await readdir(path.join(repo, "penguins")), ["1"]);
  });

  void it("a statistic that overflows is an error naming the field, not a manifest no worker loads", async () => {
    // A standard deviation that overflowed to Infinity, which JSON would write as null.
    const overflowing: Recipe = {
      ...penguins,
      preprocessing: (train) => {
        const fitted = penguins.preprocessing(train) as TabularPreprocessing;
        return {
          ...fitted,
          features: fitted.features.map((f, i) => (i === 3 ? { ...f, std: Infinity } : f)),
        };
      },
    };
    await assert.rejects(
      trainRecipe(overflowing, repo, { progress: false, now: TRAINED_AT, version: "3" }),
      /penguins: not written, as no worker would load it: manifest\.json invalid at preprocessing\.features\.\d+\.std/,
    );
    await assert.rejects(
      trainRecipe({ ...penguins, load: () => Promise.resolve([]) }, repo, { progress: false, version: "3" }),
      /penguins: 0 usable rows in Palmer penguins/,
    );
    assert.deepEqual(await readdir(path.join(repo, "penguins")), ["1"]);
  });

  void it("a repository it cannot write into is refused before any training", async () => {
    const file = path.join(repo, "not-a-folder");
    await writeFile(file, "");
    // A repository whose penguins "folder" is a file: found out before training too.
    const blocked = path.join(repo, "blocked");
    await mkdir(blocked);
    await writeFile(path.join(blocked, "penguins"), "");
    for (const where of [file, "", blocked]) {
      const cli = train("penguins", "--repository", where);
      assert.equal(cli.status, 1, cli.stderr);
      assert.match(
        cli.stderr,
        where === ""
          ? /--repository must name a folder/
          : where === blocked
            ? /cannot write models into .*blocked: .*penguins is not a folder/
            : /cannot write models into .*not-a-folder/,
      );
      assert.doesNotMatch(cli.stderr, /\[#|at .*\.ts:\d+/, "no training, no stack trace");
    }
  });

  void it("--evaluate of a version it did not train says why it cannot", async () => {
    const manifest = JSON.parse(
      await readFile(path.join(repo, "penguins", "1", "manifest.json"), "utf8"),
    ) as Record<string, unknown>;
    await cp(path.join(repo, "penguins", "1"), path.join(repo, "penguins", "4"), { recursive: true });
    await writeFile(
      path.join(repo, "penguins", "4", "manifest.json"),
      JSON.stringify({ ...manifest, version: "4", training: undefined }),
    );
    const cli = train("penguins", "--repository", repo, "--model-version", "4", "--evaluate");
    assert.equal(cli.status, 1, cli.stderr);
    assert.match(
      cli.stderr,
      /penguins version 4 was not made by inferline train: .*manifest\.json records no training\.seed/,
    );
    await rm(path.join(repo, "penguins", "4"), { recursive: true });
  });

  void it("a stop while the version is written waits for it: the old version or the new, nothing beside", async () => {
    const dir = path.join(repo, "signals", "1");
    await cp(path.join(repo, "penguins", "1"), dir, { recursive: true });
    // A file large enough that writing and flushing it takes a while.
    const script = path.join(repo, "write.mts");
    await writeFile(
      script,
      `import { writeVersionFolder } from ${JSON.stringify(path.resolve("src/training/version-folder.ts"))};
       await writeVersionFolder(${JSON.stringify(dir)}, { "model.onnx": new Uint8Array(64 * 1024 * 1024), "manifest.json": "{}" });`,
    );
    const child = spawn(process.execPath, ["--import", "tsx", script], { stdio: ["ignore", "pipe", "pipe"] });
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on("exit", (_code, signal) => resolve(signal)),
    );
    // Sent once the staged folder exists: the write is under way.
    for (let i = 0; i < 600 && !(await readdir(path.dirname(dir))).some((n) => n.startsWith(".1.tmp-")); i++)
      await sleep(5);
    child.kill("SIGTERM");
    assert.equal(await exited, "SIGTERM", "the stop is still a stop");
    assert.deepEqual(await readdir(path.dirname(dir)), ["1"]);
    // The write ran to its end first: the new version is in place, whole.
    assert.equal((await readFile(path.join(dir, "model.onnx"))).length, 64 * 1024 * 1024);
  });
});

/** `inferline train <args>` from the sources, to its end. */
function train(...args: string[]) {
  return spawnSync(process.execPath, ["--import", "tsx", "src/cli/index.ts", "train", ...args], {
    encoding: "utf8",
  });
}
