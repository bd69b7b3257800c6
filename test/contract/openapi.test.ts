import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { before, describe, it } from "node:test";
import { Validator } from "@seriousme/openapi-schema-validator";
import * as catalog from "../../src/errors/catalog.js";
import { ERROR_CODES } from "../../src/http/openapi.js";
import { call } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { ROOT } from "../support/processes.js";

describe("OpenAPI document", () => {
  const inferline = useInferline("openapi", { env: { AUTH_DISABLED: "true" } });
  let doc: {
    paths: Record<
      string,
      Record<string, { responses: Record<string, unknown>; tags?: string[]; security?: unknown[] }>
    >;
  };
  before(async () => {
    const r = await call(inferline.url, "GET", "/docs/json");
    assert.equal(r.status, 200);
    doc = r.body as typeof doc;
  });

  it("is a valid OpenAPI 3 document", async () => {
    const validator = new Validator();
    const result = await validator.validate(doc);
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2)?.slice(0, 2000));
  });

  it("lists every route with its statuses", () => {
    const expected: [string, string, string[]][] = [
      [
        "/api/ml/{model}",
        "post",
        ["200", "202", "400", "401", "403", "404", "413", "415", "422", "429", "500", "503"],
      ],
      ["/api/ml/{model}/batch", "post", ["200", "202", "413", "422", "429"]],
      ["/api/results/{jobId}", "get", ["200", "202", "404"]],
      ["/api/results/{jobId}", "delete", ["200", "404", "409"]],
      ["/api/results/{jobId}/events", "get", ["404", "429"]],
      ["/api/models", "get", []],
      ["/api/models/{model}", "get", []],
      ["/api/admin/cache/invalidate", "post", ["401", "403"]],
      ["/api/admin/jobs/failed", "delete", ["200", "400", "401", "403", "404"]],
      ["/api/admin/jobs/failed/retry", "post", ["200", "400", "401", "403", "404"]],
      ["/api/admin/models/{model}/pause", "post", ["200", "401", "403", "404"]],
      ["/api/admin/models/{model}/resume", "post", ["200", "401", "403", "404"]],
      ["/health", "get", ["200", "401", "429", "503"]],
      ["/metrics", "get", ["200", "401", "429"]],
      ["/api/admin/jobs/{jobId}/retry", "post", ["202", "404", "409", "414"]],
      ["/api/results/{jobId}/feedback", "post", ["201", "404", "414"]],
      ["/dashboard/assets/{name}", "get", ["200", "401", "403", "404"]],
      ["/dashboard/login", "get", ["200", "429"]],
      ["/dashboard/login", "post", ["204", "303", "400", "401", "403", "413", "415", "429", "503"]],
      ["/dashboard/logout", "post", ["303", "403", "503"]],
      ["/health/live", "get", []],
      ["/health/ready", "get", []],
    ];
    for (const [path, method, statuses] of expected) {
      const op = doc.paths[path]?.[method];
      assert.ok(op, `${method.toUpperCase()} ${path} documented`);
      for (const s of statuses) assert.ok(op.responses[s], `${method} ${path} documents ${s}`);
    }
  });

  it("describes the bodies routes check themselves, and Retry-After only where it is sent", () => {
    type Op = {
      requestBody?: { content: Record<string, { schema: { type?: string; example?: unknown } }> };
      responses: Record<string, { headers?: Record<string, unknown> }>;
    };
    const op = (path: string, method: string) => doc.paths[path]?.[method] as Op | undefined;
    // One input: an object, with an example the docs page fills in for "Try it out".
    const submit = op("/api/ml/{model}", "post")?.requestBody?.content["application/json"]?.schema;
    assert.equal(submit?.type, "object");
    assert.ok(submit?.example);
    // The sign-in form takes the key as a form field or JSON.
    assert.deepEqual(Object.keys(op("/dashboard/login", "post")?.requestBody?.content ?? {}).sort(), [
      "application/json",
      "application/x-www-form-urlencoded",
    ]);
    // /health answers 503 unhealthy as a state, without Retry-After; its 429 says when to come back.
    const health = op("/health", "get")?.responses;
    assert.equal(health?.["503"]?.headers?.["retry-after"], undefined);
    assert.ok(health?.["429"]?.headers?.["retry-after"]);
    // The probes are never rate-limited, so they never answer 429.
    for (const probe of ["/health/live", "/health/ready"])
      assert.equal(op(probe, "get")?.responses["429"], undefined, probe);
  });

  it("names every operation once, for code generators", () => {
    const ids = Object.values(doc.paths).flatMap((ops) =>
      Object.values(ops).map((op) => (op as { operationId?: string }).operationId),
    );
    assert.ok(
      ids.every((id) => typeof id === "string" && /^[a-z]+[A-Za-z0-9]*$/.test(id)),
      JSON.stringify(ids),
    );
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(ids.includes("postApiMlModel") && ids.includes("getApiResultsJobId"), JSON.stringify(ids));
  });

  it("tags say who may call: admin routes, the dashboard and operations apart from predictions", () => {
    const tagOf = (path: string, method: string) => doc.paths[path]?.[method]?.tags?.[0];
    assert.equal(tagOf("/api/stats", "get"), "admin");
    assert.equal(tagOf("/api/admin/jobs/failed", "get"), "admin");
    assert.equal(tagOf("/dashboard", "get"), "dashboard");
    assert.equal(tagOf("/dashboard/assets/{name}", "get"), "dashboard");
    assert.equal(tagOf("/health", "get"), "operations");
    assert.equal(tagOf("/api/ml/{model}", "post"), "predictions");
    assert.equal(tagOf("/api/results/{jobId}", "get"), "predictions");
    // Secured routes need a key; the dashboard's assets too, like its page.
    assert.ok(doc.paths["/dashboard/assets/{name}"]?.get?.security?.length);
  });

  it("every error class is in the catalog", () => {
    const outside = readdirSync(path.join(ROOT, "src"), { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts") && f !== path.join("errors", "catalog.ts"))
      .filter((f) => /extends AppError\b/.test(readFileSync(path.join(ROOT, "src", f), "utf8")));
    assert.deepEqual(outside, []);
  });

  it("names every error code of the catalog", () => {
    const documented = new Set(Object.values(ERROR_CODES).flat());
    const text = JSON.stringify(doc);
    for (const value of Object.values(catalog)) {
      if (typeof value !== "function" || !(value.prototype instanceof catalog.AppError)) continue;
      const err = new (value as unknown as new (...a: unknown[]) => catalog.AppError)("x", "y", 1);
      assert.ok(documented.has(err.code), `${err.code} (${value.name}) in ERROR_CODES`);
      assert.ok(ERROR_CODES[err.status]?.includes(err.code), `${err.code} listed under ${err.status}`);
      assert.ok(text.includes(err.code), `${err.code} appears in the document`);
    }
  });
});
