import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { call } from "../support/http.js";
import { useInferline } from "../support/inferline.js";

interface Example {
  readonly command: string;
  readonly path: string;
  readonly body: unknown;
}

/** README's curl commands that submit a prediction: their path (with query) and JSON body. */
function readmePredictions(): Example[] {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const commands = readme.replace(/\\\n\s*/g, " ").split("\n");
  const examples: Example[] = [];
  for (const command of commands) {
    if (!/^curl .*-XPOST/.test(command)) continue;
    const url = /'?(?:https?:\/\/)?localhost:\d+(\/api\/ml\/[^\s']+)'?/.exec(command);
    const data = /-d '([^']*)'/.exec(command);
    if (!url?.[1] || !data?.[1]) continue;
    examples.push({ command, path: url[1], body: JSON.parse(data[1]) });
  }
  return examples;
}

describe("README's examples", () => {
  const inferline = useInferline("readme", { worker: true });

  it("every prediction it shows is accepted and completes", async () => {
    const examples = readmePredictions();
    assert.ok(examples.length >= 2, `found ${examples.length} prediction examples in README.md`);
    for (const ex of examples) {
      const r = await call(inferline.url, "POST", ex.path, ex.body, { prefer: "wait=20" });
      assert.equal(r.status, 200, `${ex.command}\n→ ${JSON.stringify(r.body)}`);
      assert.equal(r.body.status, "completed", `${ex.command}\n→ ${JSON.stringify(r.body)}`);
    }
  });
});
