import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const root = new URL("../../", import.meta.url);

describe("the package", () => {
  it("exports only files the build makes, and the client from its main entry", async () => {
    const pkg = JSON.parse(readFileSync(new URL("package.json", root), "utf8")) as {
      exports: Record<string, string>;
      bin: Record<string, string>;
    };
    for (const [entry, target] of [...Object.entries(pkg.exports), ...Object.entries(pkg.bin)])
      assert.ok(
        existsSync(fileURLToPath(new URL(target, root))),
        `${entry} → ${target} exists after the build`,
      );
    const main = (await import(fileURLToPath(new URL(pkg.exports["."]!, root)))) as Record<string, unknown>;
    assert.equal(typeof main.InferlineClient, "function");
  });
});
