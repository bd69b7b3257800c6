import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { call, freePort } from "../support/http.js";
import { useInferline } from "../support/inferline.js";

describe("METRICS_ENABLED=false", () => {
  const env: Record<string, string> = { MODELS: "echo", METRICS_ENABLED: "false" };
  // The worker is given a metrics port it would listen on with metrics on. Picked in a hook
  // registered before useInferline's, which runs first and reads `env` only then.
  let port = 0;
  before(async () => {
    port = await freePort();
    env.WORKER_METRICS_PORT = String(port);
  });
  const inferline = useInferline("metrics-off", { env, worker: true });

  /** Asserts `path` answers 404 with the JSON error body of a route that does not exist. */
  const notFound = async (path: string) => {
    // Not `call`: with metrics on, /metrics answers Prometheus text, which is not JSON.
    const res = await fetch(inferline.url + path);
    const text = await res.text();
    assert.equal(res.status, 404, `${path}: ${text.slice(0, 200)}`);
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
    const error = (JSON.parse(text) as { error: { code: string; message: string } }).error;
    assert.equal(error.code, "route_not_found", path);
    assert.equal(typeof error.message, "string");
  };

  it("/metrics and /api/stats answer 404 route_not_found", async () => {
    await notFound("/metrics");
    await notFound("/api/stats");
    await notFound("/api/stats?window=5m");
  });

  it("predictions still work end to end, and the worker serves no metrics", async () => {
    for (const text of ["metrics off, one", "metrics off, two"]) {
      const r = await call(inferline.url, "POST", "/api/ml/echo", { text }, { prefer: "wait=10" });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.status, "completed");
      assert.equal((r.body.result as { echo: string }).echo, text);
    }
    // Nothing listens on the worker's metrics port (with metrics on, the worker would by now:
    // it starts listening right after it starts taking jobs).
    const refused = await fetch(`http://127.0.0.1:${port}/metrics`).then(
      (res) => assert.fail(`the worker answered ${res.status} on its metrics port ${port}`),
      (err: unknown) => (err as { cause?: { code?: string } }).cause?.code,
    );
    assert.equal(refused, "ECONNREFUSED");
    const events = inferline.worker.lines.map((l) => l.event);
    assert.ok(!events.includes("metrics_listening"), "no metrics_listening line");
    assert.ok(!events.includes("metrics_port_in_use"), "no metrics_port_in_use line");
  });
});
