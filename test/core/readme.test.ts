import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { call } from "../support/http.js";
import { useInferline } from "../support/inferline.js";

interface Example {
  readonly command: string;
  readonly method: string;
  readonly path: string;
  readonly body: unknown;
  readonly prefer: string | undefined;
  /** The answer README shows in the comment line after the command, if any. */
  readonly shown: string | undefined;
}

/** The placeholder job id README's commands use (`sentiment.3f9c…`). */
const SHOWN_ID = /sentiment\.[0-9a-f]+…/;

/** README's curl commands against the local API: method, path (with query), body, and the answer shown. */
function readmeExamples(): Example[] {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const lines = readme.replace(/\\\n\s*/g, " ").split("\n");
  const examples: Example[] = [];
  lines.forEach((line, i) => {
    const command = line.replace(/\s+#.*$/, "");
    if (!/^curl /.test(command)) return;
    const url = /'?(?:https?:\/\/)?localhost:\d+(\/[^\s']*)'?/.exec(command);
    if (!url?.[1]) return;
    const data = /-d '([^']*)'/.exec(command);
    const next = lines[i + 1] ?? "";
    examples.push({
      command,
      method: /-X\s*([A-Z]+)/.exec(command)?.[1] ?? "GET",
      path: url[1],
      body: data?.[1] ? JSON.parse(data[1]) : undefined,
      prefer: /-H 'Prefer: ([^']+)'/.exec(command)?.[1],
      shown: next.startsWith("# {") ? next.slice(2) : undefined,
    });
  });
  return examples;
}

/**
 * README's answers elide with "…": `,…` stands for more keys, and a string with "…" for any
 * string with the same start (the hex of an id dropped). Returns the answer as JSON with such
 * strings kept (checked by `matches`).
 */
function parseShown(shown: string): unknown {
  return JSON.parse(shown.replace(/,…(?=[,}])/g, ""));
}

/** Every key shown is in the answer with a value of the same type; strings equal (or start alike where elided). */
function matches(actual: unknown, shown: unknown, at = "$"): void {
  if (shown !== null && typeof shown === "object") {
    assert.ok(actual !== null && typeof actual === "object", `${at}: an object`);
    for (const [k, v] of Object.entries(shown))
      matches((actual as Record<string, unknown>)[k], v, `${at}.${k}`);
    return;
  }
  if (typeof shown === "string" && shown.includes("…")) {
    const start = shown.slice(0, shown.indexOf("…")).replace(/[0-9a-f]+$/, "");
    assert.ok(
      typeof actual === "string" && actual.startsWith(start),
      `${at}: ${String(actual)} starts ${start}`,
    );
    return;
  }
  if (typeof shown === "string") assert.equal(actual, shown, at);
  else assert.equal(typeof actual, typeof shown, `${at}: a ${typeof shown}, got ${JSON.stringify(actual)}`);
}

describe("README's examples", () => {
  const inferline = useInferline("readme", { worker: true });

  it("every prediction it shows is accepted and completes", async () => {
    const predictions = readmeExamples().filter(
      (ex) => ex.method === "POST" && ex.path.startsWith("/api/ml/"),
    );
    assert.ok(predictions.length >= 2, `found ${predictions.length} prediction examples in README.md`);
    for (const ex of predictions) {
      const r = await call(inferline.url, "POST", ex.path, ex.body, { prefer: "wait=20" });
      assert.equal(r.status, 200, `${ex.command}\n→ ${JSON.stringify(r.body)}`);
      assert.equal(r.body.status, "completed", `${ex.command}\n→ ${JSON.stringify(r.body)}`);
    }
  });
});

describe("README's walk-through", () => {
  // A fixture of its own: the examples above would have cached these inputs already.
  const inferline = useInferline("readme-walk", { worker: true });

  it("every command, run in order, answers as shown, its job id standing for the placeholder", async () => {
    const examples = readmeExamples();
    assert.ok(examples.length >= 6, `found ${examples.length} curl examples in README.md`);
    assert.ok(examples.filter((ex) => ex.shown).length >= 2, "README shows answers");
    let jobId: string | undefined;
    for (const ex of examples) {
      if (SHOWN_ID.test(ex.path)) assert.ok(jobId, `${ex.command}: a job id from an earlier command`);
      const path = ex.path.replace(SHOWN_ID, jobId ?? "");
      const headers: Record<string, string> = ex.prefer ? { prefer: ex.prefer } : {};
      const r = await call(inferline.url, ex.method, path, ex.body, headers);
      const what = `${ex.command}\n→ ${r.status} ${JSON.stringify(r.body)}`;
      // The cancel example may find its job already done: the one refusal README allows for it.
      if (ex.method === "DELETE") assert.ok(r.status === 200 || r.body.error, what);
      else assert.ok(r.status === 200 || r.status === 202, what);
      if (ex.method === "DELETE" && r.status !== 200)
        assert.equal((r.body.error as { code: string }).code, "job_not_cancelable", what);
      if (ex.shown) matches(r.body, parseShown(ex.shown));
      if (!jobId && typeof r.body.job_id === "string" && r.body.job_id.startsWith("sentiment."))
        jobId = r.body.job_id;
    }
  });
});
