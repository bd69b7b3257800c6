import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { Ajv, type ValidateFunction } from "ajv";
import { call } from "../support/http.js";
import { useInferline } from "../support/inferline.js";

interface Operation {
  parameters?: { name: string; in: string }[];
  responses: Record<
    string,
    { content?: Record<string, { schema?: object }>; headers?: Record<string, unknown> }
  >;
}
interface Doc {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, object> };
}

/** The document's path template a concrete path falls under (`/api/results/{jobId}`). */
function templateOf(doc: Doc, path: string): string | undefined {
  const parts = path.split("?")[0]!.split("/");
  return Object.keys(doc.paths).find((template) => {
    const t = template.split("/");
    return t.length === parts.length && t.every((seg, i) => seg.startsWith("{") || seg === parts[i]);
  });
}

/**
 * Real answers of every route, success and error, checked against the OpenAPI document the API
 * serves: each status must be documented for its operation, with the content type sent, and a
 * JSON body must match the schema documented for it. A generated client trusts exactly this.
 */
describe("OpenAPI document: every answer the routes give is documented", () => {
  const inferline = useInferline("openapi-answers", {
    env: { WAIT_MAX_SECONDS: "10", BATCH_MAX_ITEMS: "4" },
    worker: true,
  });
  let doc: Doc;
  const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
  const validators = new Map<string, ValidateFunction>();

  before(async () => {
    doc = (await call(inferline.url, "GET", "/docs/json")).body as unknown as Doc;
    for (const [name, schema] of Object.entries(doc.components.schemas))
      ajv.addSchema({ ...schema, $id: `#/components/schemas/${name}` });
  });

  /** Sends a request and checks its answer against the document; returns the answer. */
  async function send(
    method: string,
    path: string,
    expected: number,
    body?: unknown,
    headers: Record<string, string> = {},
  ) {
    const res = await fetch(inferline.url + path, {
      method,
      headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
      // A redirect is an answer of its own, documented as such.
      redirect: "manual",
    });
    const text = await res.text();
    const where = `${method} ${path} → ${res.status}`;
    assert.equal(res.status, expected, `${where}: ${text.slice(0, 300)}`);
    const template = templateOf(doc, path);
    assert.ok(template, `${where}: path documented`);
    const op = doc.paths[template]![method.toLowerCase()];
    assert.ok(op, `${where}: operation documented`);
    const documented = op.responses[String(res.status)];
    assert.ok(documented, `${where}: status documented (has ${Object.keys(op.responses).join(", ")})`);
    for (const header of ["location", "retry-after", "preference-applied"])
      if (res.headers.get(header) !== null)
        assert.ok(documented.headers?.[header], `${where}: the ${header} header documented`);
    const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim();
    const content = documented.content ?? {};
    // An answer without a body (a redirect, 204) is documented without content.
    if (type === "" && text === "") {
      assert.deepEqual(Object.keys(content), [], `${where}: no content documented for an empty answer`);
      return { status: res.status, body: {} };
    }
    assert.ok(
      content[type],
      `${where}: ${type} documented (has ${Object.keys(content).join(", ") || "none"})`,
    );
    const parsed: unknown = type === "application/json" ? JSON.parse(text) : text;
    const schema = content[type].schema;
    if (schema && type === "application/json") {
      const key = `${template} ${method} ${res.status}`;
      let validate = validators.get(key);
      if (!validate) {
        validate = ajv.compile(schema);
        validators.set(key, validate);
      }
      assert.ok(validate(parsed), `${where}: body matches its schema: ${ajv.errorsText(validate.errors)}`);
    }
    return { status: res.status, body: parsed as Record<string, unknown> };
  }

  it("every 429 and 503 documents Retry-After", () => {
    for (const [path, ops] of Object.entries(doc.paths))
      for (const [method, op] of Object.entries(ops))
        for (const status of ["429", "503"])
          if (op.responses[status] && !path.startsWith("/health"))
            assert.ok(op.responses[status].headers?.["retry-after"], `${method} ${path} ${status}`);
  });

  it("predictions: submit, batch, results, cancel, events", async () => {
    for (const [path, method] of [
      ["/api/ml/{model}", "post"],
      ["/api/ml/{model}/batch", "post"],
      ["/api/results/{jobId}", "get"],
    ] as const) {
      const params = doc.paths[path]?.[method]?.parameters ?? [];
      assert.ok(
        params.some((p) => p.in === "header" && p.name === "prefer"),
        `${method} ${path} documents Prefer`,
      );
    }
    await send("POST", "/api/ml/echo", 202, { text: "a" });
    const done = await send("POST", "/api/ml/echo", 200, { text: "b" }, { prefer: "wait=10" });
    const id = String(done.body.job_id);
    await send("POST", "/api/ml/nope", 404, { text: "a" });
    await send("POST", "/api/ml/echo", 422, { text: 5 });
    await send("POST", "/api/ml/echo", 400, "{bad");
    await send("POST", "/api/ml/echo", 415, "x", { "content-type": "text/plain" });
    await send("POST", "/api/ml/echo/batch", 200, { inputs: [{ text: "c" }] }, { prefer: "wait=10" });
    await send("POST", "/api/ml/echo/batch", 413, { inputs: [{}, {}, {}, {}, {}] });
    await send("GET", `/api/results/${id}`, 200);
    await send("GET", "/api/results/echo.00000000000000000000000000000000", 404);
    await send("DELETE", `/api/results/${id}`, 409);
    await send("DELETE", "/api/results/echo.00000000000000000000000000000000", 404);
    await send("GET", `/api/results/${id}/events`, 200);
    await send("GET", "/api/results/echo.00000000000000000000000000000000/events", 404);

    // A paused queue holds jobs queued: 202 while waiting, 200 when canceled.
    await send("POST", "/api/admin/models/echo/pause", 200);
    try {
      const queued = await send("POST", "/api/ml/echo", 202, { text: "held" });
      const held = String(queued.body.job_id);
      await send("GET", `/api/results/${held}`, 202);
      await send("POST", "/api/ml/echo/batch", 202, { inputs: [{ text: "held-batch" }] });
      const canceled = await send("DELETE", `/api/results/${held}`, 200);
      // The cancel answers the job view a read gives: links and `cached` included.
      assert.deepEqual(canceled.body, (await send("GET", `/api/results/${held}`, 200)).body);
    } finally {
      await send("POST", "/api/admin/models/echo/resume", 200);
    }
  });

  it("models, feedback, health, metrics, stats, dashboard", async () => {
    await send("GET", "/api/models", 200);
    await send("GET", "/api/models/sentiment", 200);
    await send("GET", "/api/models/nope", 404);

    const job = await send("POST", "/api/ml/sentiment", 200, { text: "a lovely day" }, { prefer: "wait=10" });
    const id = String(job.body.job_id);
    await send("POST", `/api/results/${id}/feedback`, 422, { label: "no-such-label" });
    await send("POST", `/api/results/${id}/feedback`, 201, { label: "positive" });
    await send("POST", `/api/results/${id}/feedback`, 409, { label: "positive" });
    await send("POST", "/api/results/sentiment.00000000000000000000000000000000/feedback", 404, {
      label: "positive",
    });

    await send("GET", "/health", 200);
    await send("GET", "/health/live", 200);
    await send("GET", "/health/ready", 200);
    await send("GET", "/metrics", 200);
    await send("GET", "/api/stats", 200);
    await send("GET", "/dashboard", 200);
    await send("GET", "/dashboard/assets/dashboard.js", 200);
    await send("GET", "/dashboard/assets/dashboard.css", 200);
    await send("GET", "/dashboard/assets/nope.js", 404);
    await send("GET", "/dashboard/login", 200);
    // The sign-in form's body is checked as any other.
    await send("POST", "/dashboard/login", 400, "{");
    await send("POST", "/dashboard/login", 415, "key=x", { "content-type": "text/plain" });
    await send("POST", "/dashboard/login", 413, { key: "k".repeat(5000) });
    await send("POST", "/dashboard/logout", 303);
    // A path parameter over the router's limit: 414, documented where there are parameters.
    await send("GET", `/api/results/sentiment.${"0".repeat(100)}`, 414);
    await send("POST", `/api/results/sentiment.${"0".repeat(100)}/feedback`, 414, { label: "positive" });
  });

  it("admin: failed jobs, retry, pause, cache, reload", async () => {
    const failed = await send("POST", "/api/ml/echo", 200, { fail: "invalid" }, { prefer: "wait=10" });
    assert.equal(failed.body.status, "failed");
    await send("GET", "/api/admin/jobs/failed", 200);
    await send("POST", `/api/admin/jobs/${String(failed.body.job_id)}/retry`, 202);
    const completed = await send("POST", "/api/ml/echo", 200, { text: "ok" }, { prefer: "wait=10" });
    await send("POST", `/api/admin/jobs/${String(completed.body.job_id)}/retry`, 409);
    await send("POST", "/api/admin/jobs/echo.00000000000000000000000000000000/retry", 404);
    await send("GET", "/api/admin/jobs/failed?model=nope", 404);
    await send("POST", "/api/admin/jobs/failed/retry?model=echo", 200);
    await send("POST", "/api/admin/jobs/failed/retry?model=nope", 404);
    await send("DELETE", "/api/admin/jobs/failed", 200);
    await send("DELETE", "/api/admin/jobs/failed?model=nope", 404);
    await send("POST", "/api/admin/models/nope/pause", 404);
    await send("POST", "/api/admin/cache/invalidate", 200, {});
    await send("POST", "/api/admin/cache/invalidate", 200, { model: "sentiment" });
    await send("POST", "/api/admin/cache/invalidate", 404, { model: "nope" });
    await send("POST", "/api/admin/cache/invalidate", 400, { version: "1" });
    await send("POST", "/api/admin/models/reload", 200);
  });
});
