// Static checks of the deployment artefacts against the code they deploy: every variable they
// set is one Inferline reads, every probe path, port and metric name exists, and the timeouts
// fit together (grace periods, proxy timeouts, body limits). No container or cluster needed.
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { Redis } from "ioredis";
import { parse, parseAllDocuments } from "yaml";
import { ENV_SCHEMA } from "../../src/config/env.js";
import { buildConfig } from "../../src/config/index.js";
import { Metrics } from "../../src/telemetry/metrics.js";
import { call } from "../support/http.js";
import { useInferline } from "../support/inferline.js";
import { ROOT } from "../support/processes.js";
import { REDIS_URL } from "../support/redis.js";
import { modelKey } from "../../src/queue/keys.js";

const read = (file: string) => readFileSync(path.join(ROOT, file), "utf8");
const DEFAULTS = buildConfig({});
const KNOWN = new Set(Object.keys(ENV_SCHEMA));

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === "object" ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** Every Kubernetes object in deploy/k8s, as kustomization.yaml lists them. */
const K8S: Obj[] = arr(obj(parse(read("deploy/k8s/kustomization.yaml"))).resources).flatMap((f) =>
  parseAllDocuments(read(`deploy/k8s/${String(f)}`)).map((d) => obj(d.toJS())),
);
const k8s = (kind: string, name: string): Obj => {
  const found = K8S.find((o) => o.kind === kind && obj(o.metadata).name === name);
  assert.ok(found, `deploy/k8s has no ${kind} ${name}`);
  return found;
};
const podSpec = (deployment: Obj) => obj(obj(obj(deployment.spec).template).spec);
const containers = (deployment: Obj) => arr(podSpec(deployment).containers).map(obj);
const INFERLINE_DEPLOYMENTS = ["inferline-api", "inferline-worker"];

const COMPOSE = obj(parse(read("compose.yaml"), { merge: true }));
const COMPOSE_PROD = obj(parse(read("compose.prod.yaml"), { merge: true }));
const service = (compose: Obj, name: string) => obj(obj(compose.services)[name]);

/** `KEY=value` lines of an env file. */
function envFile(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of read(file).split("\n")) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** Seconds from a compose duration ("40s", "1m30s"). */
function seconds(duration: unknown): number {
  let total = 0;
  for (const [, n, unit] of String(duration).matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g))
    total += Number(n) * { ms: 0.001, s: 1, m: 60, h: 3600 }[unit as "ms" | "s" | "m" | "h"];
  return total;
}

/** Size in bytes from nginx / Kubernetes notation ("1m", "10M", "1024k", "2Mi"). */
function bytes(size: string): number {
  const m = /^(\d+)\s*([kKmMgG]i?)?$/.exec(size.trim());
  assert.ok(m, `unreadable size ${size}`);
  const unit = (m[2] ?? "").toLowerCase().replace("i", "");
  return Number(m[1]) * ({ "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[unit] ?? NaN);
}

/** The systemd unit's `Key=value` settings. */
function unit(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of read(file).split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = out[m[1]!] === undefined ? m[2]! : `${out[m[1]!]}\n${m[2]!}`;
  }
  return out;
}

/** The value Inferline runs with in this layout: the artefact's setting, else the default. */
const setting = (env: Record<string, unknown>, name: keyof typeof DEFAULTS): number =>
  env[name] !== undefined ? Number(env[name]) : Number(DEFAULTS[name]);

// The shutdown sequences' fixed steps after their configurable drain (src/api/main.ts,
// src/worker/main.ts): the worker's drain may overrun its timeout by 5 s, then metrics, stats
// and Redis take up to 3 s; the API wakes waiters (2 s), closes (+1 s), then queues and stats (4 s).
const WORKER_SHUTDOWN_EXTRA_S = 8;
const API_SHUTDOWN_EXTRA_S = 7;

const NGINX = [
  "nginx.conf",
  "conf.d/upstream.conf",
  "snippets/inferline-locations.conf",
  "snippets/inferline-proxy.conf",
]
  .map((f) => read(`deploy/nginx/${f}`))
  .join("\n")
  .replace(/#.*$/gm, "");
const directive = (name: string): string[] =>
  [...NGINX.matchAll(new RegExp(`^\\s*${name}\\s+([^;]+);`, "gm"))].map((m) => m[1]!.trim());

describe("deployment artefacts set only variables Inferline reads", () => {
  it("the ConfigMap, Secret and container env in deploy/k8s", () => {
    const configMap = obj(k8s("ConfigMap", "inferline-config").data);
    for (const name of Object.keys(configMap)) assert.ok(KNOWN.has(name), `ConfigMap sets unknown ${name}`);
    // REDIS_PASSWORD is Redis's own (redis.yaml); everything else in the Secret is Inferline's.
    for (const name of Object.keys(obj(k8s("Secret", "inferline-secrets").stringData)))
      assert.ok(KNOWN.has(name) || name === "REDIS_PASSWORD", `Secret sets unknown ${name}`);
    for (const d of INFERLINE_DEPLOYMENTS)
      for (const c of containers(k8s("Deployment", d)))
        for (const e of arr(c.env).map(obj))
          assert.ok(KNOWN.has(String(e.name)), `${d} sets unknown ${String(e.name)}`);
  });

  it("compose files, the env examples, systemd units and the Dockerfile", () => {
    for (const [file, compose] of [
      ["compose.yaml", COMPOSE],
      ["compose.prod.yaml", COMPOSE_PROD],
    ] as const)
      for (const name of ["api1", "api2", "worker"])
        for (const key of Object.keys(obj(service(compose, name).environment)))
          assert.ok(KNOWN.has(key), `${file} ${name} sets unknown ${key}`);

    // The production env file is also the compose files' interpolation source: a name there is
    // Inferline's, or one the compose files interpolate.
    const composeText = read("compose.yaml") + read("compose.prod.yaml");
    for (const name of Object.keys(envFile("deploy/env.production.example")))
      assert.ok(
        KNOWN.has(name) || new RegExp(`\\$\\$?\\{${name}[:}]`).test(composeText),
        `deploy/env.production.example sets ${name}, which neither Inferline nor the compose files read`,
      );

    for (const name of Object.keys(envFile("deploy/systemd/inferline.env.example")))
      assert.ok(KNOWN.has(name), `inferline.env.example sets unknown ${name}`);
    for (const file of ["inferline-api@.service", "inferline-worker@.service"])
      for (const line of (unit(`deploy/systemd/${file}`).Environment ?? "").split("\n").filter(Boolean))
        assert.ok(KNOWN.has(line.split("=")[0]!), `${file} sets unknown ${line}`);

    const dockerEnv = /^ENV ((?:.*\\\n)*.*)$/m.exec(read("Dockerfile"))?.[1] ?? "";
    for (const [, name] of dockerEnv.matchAll(/([A-Z][A-Z0-9_]*)=/g))
      assert.ok(KNOWN.has(name!), `Dockerfile sets unknown ${name}`);
  });

  it("every layout behind a proxy trusts it for the client's address", () => {
    // Without it, per-address rate limits would count the proxy: one client could lock out all.
    const trusted = (value: unknown) => buildConfig({ TRUST_PROXY: String(value) }).TRUST_PROXY !== false;
    assert.ok(trusted(obj(k8s("ConfigMap", "inferline-config").data).TRUST_PROXY), "Kubernetes");
    assert.ok(trusted(envFile("deploy/systemd/inferline.env.example").TRUST_PROXY), "systemd");
    for (const name of ["api1", "api2"])
      assert.match(String(obj(service(COMPOSE, name).environment).TRUST_PROXY), /^\$\{TRUST_PROXY:-true\}$/);
  });

  it("keeps secrets out of the ConfigMap", () => {
    const configMap = obj(k8s("ConfigMap", "inferline-config").data);
    for (const [name, value] of Object.entries(configMap)) {
      assert.doesNotMatch(name, /PASSWORD|SECRET|API_KEYS|REDIS_URL/, `${name} belongs in the Secret`);
      assert.doesNotMatch(String(value), /:\/\/[^/]*:[^/]*@/, `${name} carries credentials`);
    }
  });
});

describe("probes, ports and metric names exist", () => {
  const ROUTES = ["/health/live", "/health/ready"];

  it("Kubernetes probes: liveness never depends on Redis, readiness does", () => {
    const api = k8s("Deployment", "inferline-api");
    const [c] = containers(api);
    const port = (p: unknown) => obj(obj(p).httpGet);
    assert.equal(port(c?.livenessProbe).path, "/health/live");
    assert.equal(port(c?.startupProbe).path, "/health/live");
    assert.equal(port(c?.readinessProbe).path, "/health/ready");
    const named = arr(c?.ports).map(obj);
    for (const probe of [c?.livenessProbe, c?.readinessProbe, c?.startupProbe]) {
      const p = port(probe);
      const target = named.find((n) => n.name === p.port || n.containerPort === p.port);
      assert.ok(target, `probe port ${String(p.port)} is not a container port`);
      assert.equal(target.containerPort, setting(obj(k8s("ConfigMap", "inferline-config").data), "PORT"));
    }
    assert.equal(
      obj(obj(obj(api.spec).template).metadata).annotations &&
        obj(obj(obj(obj(api.spec).template).metadata).annotations)["prometheus.io/port"],
      String(setting(obj(k8s("ConfigMap", "inferline-config").data), "PORT")),
    );
    const worker = k8s("Deployment", "inferline-worker");
    // A worker's liveness is its metrics server (no Redis involved), which must then stay on.
    const [w] = containers(worker);
    for (const probe of [w?.livenessProbe, w?.startupProbe]) {
      assert.equal(obj(obj(probe).httpGet).path, "/metrics");
      assert.equal(obj(obj(probe).httpGet).port, "metrics");
    }
    const metricsEnabled = obj(k8s("ConfigMap", "inferline-config").data).METRICS_ENABLED;
    assert.ok(metricsEnabled === undefined || metricsEnabled === "true", "METRICS_ENABLED off");
    const metricsPort = obj(
      arr(containers(worker)[0]?.ports)
        .map(obj)
        .find((p) => p.name === "metrics"),
    );
    assert.equal(
      metricsPort.containerPort,
      setting(obj(k8s("ConfigMap", "inferline-config").data), "WORKER_METRICS_PORT"),
    );
    assert.equal(
      obj(obj(obj(worker.spec).template).metadata).annotations &&
        obj(obj(obj(obj(worker.spec).template).metadata).annotations)["prometheus.io/port"],
      String(setting(obj(k8s("ConfigMap", "inferline-config").data), "WORKER_METRICS_PORT")),
    );
  });

  it("systemd worker instances on one host each get a metrics port of their own", () => {
    const exec = unit("deploy/systemd/inferline-worker@.service").ExecStart ?? "";
    const base = /WORKER_METRICS_PORT=\$\$\(\((\d+) \+ %i\)\)/.exec(exec)?.[1];
    assert.ok(base, `ExecStart=${exec}`);
    // Instance 1 keeps the default port that docs and scrape configs name.
    assert.equal(Number(base) + 1, DEFAULTS.WORKER_METRICS_PORT);
  });

  it("image and compose health checks use routes that exist", () => {
    const paths = [...read("compose.yaml").matchAll(/127\.0\.0\.1:\d+(\/[a-z/]+)/g)].map((m) => m[1]!);
    assert.ok(paths.length >= 1);
    for (const p of paths) assert.ok(ROUTES.includes(p), `health check on ${p}`);
    // The image's check asks the API's /health/live, or a worker's metrics server (a worker has
    // no API); compose keeps it for workers.
    const check = /^HEALTHCHECK [\s\S]*?CMD (\[.*\])$/m.exec(read("Dockerfile"))?.[1] ?? "";
    const script = String((JSON.parse(check) as string[])[2]);
    assert.match(script, /\(e\.PORT\|\|3000\)\+'\/health\/live'/);
    assert.match(
      script,
      new RegExp(`\\(e\\.WORKER_METRICS_PORT\\|\\|${DEFAULTS.WORKER_METRICS_PORT}\\)\\+'/metrics'`),
    );
    assert.equal(obj(service(COMPOSE, "worker").healthcheck).disable, undefined);
    assert.equal(
      /dns_sd_configs:[\s\S]*?port: (\d+)/.exec(read("deploy/prometheus/prometheus.yml"))?.[1],
      String(DEFAULTS.WORKER_METRICS_PORT),
    );
  });

  it("every inferline_* metric the KEDA query, alerts and dashboards name is exported", async () => {
    const names = new Set<string>();
    for (const role of ["api", "worker"] as const) {
      const gauges =
        role === "api"
          ? async () => ({
              models: [
                {
                  model: "m",
                  waiting: 0,
                  active: 0,
                  retrying: 0,
                  failed: 0,
                  oldest_waiting_age_seconds: 0,
                  paused: false,
                },
              ],
              workers: 1,
            })
          : undefined;
      const health = role === "api" ? async () => ({ status: "healthy" }) : undefined;
      const text = await new Metrics(role, gauges, health).text();
      for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
        names.add(name!);
        if (type === "histogram" || type === "summary")
          for (const s of ["_bucket", "_sum", "_count"]) names.add(`${name!}${s}`);
      }
    }
    const sources = {
      "deploy/k8s/keda-scaledobject.yaml": read("deploy/k8s/keda-scaledobject.yaml"),
      "deploy/prometheus/alerts.yml": read("deploy/prometheus/alerts.yml"),
      ...Object.fromEntries(
        readdirSync(path.join(ROOT, "deploy/grafana/provisioning/dashboards"))
          .filter((f) => f.endsWith(".json"))
          .map((f) => [f, read(`deploy/grafana/provisioning/dashboards/${f}`)]),
      ),
    };
    for (const [file, text] of Object.entries(sources))
      for (const [name] of text.matchAll(/\binferline_[a-z0-9_]+/g))
        assert.ok(names.has(name), `${file} names ${name}, which no process exports`);
    assert.match(sources["deploy/k8s/keda-scaledobject.yaml"], /inferline_queue_depth/);
    // A query finding nothing (no pod scraped) must not read as an empty queue.
    const trigger = obj(
      arr(obj(k8s("ScaledObject", "inferline-worker").spec).triggers).map(obj)[0]?.metadata,
    );
    assert.equal(trigger.ignoreNullValues, "false");
    // The PodMonitor (Prometheus Operator) scrapes the ports the pods name.
    const monitor = obj(parse(read("deploy/k8s/podmonitor.yaml")));
    const ports = arr(obj(monitor.spec).podMetricsEndpoints).map((e) => obj(e).port);
    const named = INFERLINE_DEPLOYMENTS.flatMap((d) =>
      containers(k8s("Deployment", d)).flatMap((c) => arr(c.ports).map((p) => obj(p).name)),
    );
    assert.deepEqual([...named].sort(), [...ports].sort());
  });
});

describe("timeouts fit together", () => {
  it("workers finish their jobs before they are killed (Kubernetes, compose, systemd)", () => {
    const cm = obj(k8s("ConfigMap", "inferline-config").data);
    const k8sGrace = Number(podSpec(k8s("Deployment", "inferline-worker")).terminationGracePeriodSeconds);
    assert.ok(
      k8sGrace >= setting(cm, "WORKER_SHUTDOWN_TIMEOUT_MS") / 1000 + WORKER_SHUTDOWN_EXTRA_S,
      `worker terminationGracePeriodSeconds ${k8sGrace}`,
    );
    const env = obj(service(COMPOSE, "worker").environment);
    const composeShutdown = Number(/:-(\d+)\}/.exec(String(env.WORKER_SHUTDOWN_TIMEOUT_MS))?.[1]);
    const composeGrace = seconds(service(COMPOSE, "worker").stop_grace_period);
    assert.ok(
      composeGrace >= composeShutdown / 1000 + WORKER_SHUTDOWN_EXTRA_S,
      `compose worker ${composeGrace}s`,
    );
    const sd = unit("deploy/systemd/inferline-worker@.service");
    const sdEnv = envFile("deploy/systemd/inferline.env.example");
    assert.ok(
      Number(sd.TimeoutStopSec) >=
        setting(sdEnv, "WORKER_SHUTDOWN_TIMEOUT_MS") / 1000 + WORKER_SHUTDOWN_EXTRA_S,
      `inferline-worker TimeoutStopSec=${sd.TimeoutStopSec}`,
    );
  });

  it("API processes drain before they are killed", () => {
    const cm = obj(k8s("ConfigMap", "inferline-config").data);
    const spec = podSpec(k8s("Deployment", "inferline-api"));
    const preStop = JSON.stringify(obj(containers(k8s("Deployment", "inferline-api"))[0]?.lifecycle).preStop);
    const pause = Number(/setTimeout\([^,]+,\s*(\d+)\)/.exec(preStop)?.[1] ?? 0) / 1000;
    assert.ok(
      Number(spec.terminationGracePeriodSeconds) >=
        pause + setting(cm, "SHUTDOWN_TIMEOUT_MS") / 1000 + API_SHUTDOWN_EXTRA_S,
      `api terminationGracePeriodSeconds ${String(spec.terminationGracePeriodSeconds)}`,
    );
    for (const name of ["api1", "api2"]) {
      const grace = seconds(service(COMPOSE, name).stop_grace_period);
      assert.ok(
        grace >= DEFAULTS.SHUTDOWN_TIMEOUT_MS / 1000 + API_SHUTDOWN_EXTRA_S,
        `compose ${name} ${grace}s`,
      );
    }
    const sd = unit("deploy/systemd/inferline-api@.service");
    assert.ok(
      Number(sd.TimeoutStopSec) >=
        setting(envFile("deploy/systemd/inferline.env.example"), "SHUTDOWN_TIMEOUT_MS") / 1000 +
          API_SHUTDOWN_EXTRA_S,
      `inferline-api TimeoutStopSec=${sd.TimeoutStopSec}`,
    );
  });

  it("proxies wait longer than the longest Prefer: wait and take the API's largest body", () => {
    const wait = DEFAULTS.WAIT_MAX_SECONDS;
    const [readTimeout] = directive("proxy_read_timeout");
    assert.ok(seconds(readTimeout) > wait, `nginx proxy_read_timeout ${readTimeout}`);
    const ingress = obj(obj(k8s("Ingress", "inferline").metadata).annotations);
    assert.ok(Number(ingress["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > wait);
    assert.ok(Number(ingress["nginx.ingress.kubernetes.io/proxy-send-timeout"] ?? 60) > 0);
    for (const size of directive("client_max_body_size"))
      assert.ok(bytes(size) >= DEFAULTS.BODY_LIMIT_BYTES, `nginx client_max_body_size ${size}`);
    assert.ok(
      bytes(String(ingress["nginx.ingress.kubernetes.io/proxy-body-size"])) >= DEFAULTS.BODY_LIMIT_BYTES,
    );
    // nginx's own 413 (a body over its limit) answers JSON, as the API would.
    assert.match(read("deploy/nginx/snippets/inferline-locations.conf"), /error_page 413 = @inferline_413/);
  });

  it("nginx keeps connections to the APIs alive and leaves event streams unbuffered", () => {
    assert.ok(directive("keepalive").length > 0, "upstream keepalive");
    assert.deepEqual(directive("proxy_http_version"), ["1.1"]);
    assert.match(NGINX, /proxy_set_header Connection \$inferline_connection;/);
    assert.match(NGINX, /map \$http_upgrade \$inferline_connection \{\s*default "";/);
    // nginx must close idle upstream connections before the API does, or a request may be
    // sent on a connection the API is closing (Node's server: Fastify's 72 s keep-alive).
    const [upstreamIdle] = directive("keepalive_timeout").slice(-1);
    assert.ok(seconds(upstreamIdle) < 72, `upstream keepalive_timeout ${upstreamIdle}`);
    // Event streams rely on the API's X-Accel-Buffering: no; nginx must not ignore it.
    assert.doesNotMatch(NGINX, /proxy_ignore_headers[^;]*X-Accel-Buffering/i);
    assert.match(read("src/http/routes/results.ts"), /"x-accel-buffering": "no"/);
  });
});

describe("the image and the stacks", () => {
  const dockerfile = read("Dockerfile");

  it("image: non-root, tini as PID 1, no dev dependencies or tests", () => {
    const runtime = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
    assert.match(runtime, /^USER (?!root|0\b)\S+$/m);
    assert.match(runtime, /^ENTRYPOINT \["\/usr\/bin\/tini", "--"/m);
    assert.match(dockerfile, /npm ci --omit=dev/);
    assert.match(runtime, /COPY --from=deps \/app\/node_modules/);
    assert.doesNotMatch(runtime, /COPY (?:\. |test|bench)/);
    assert.match(runtime, /^HEALTHCHECK /m);
    const ignored = read(".dockerignore").split("\n");
    for (const p of ["test", "bench", ".git", "**/node_modules", "dist", ".env"])
      assert.ok(ignored.includes(p), p);
  });

  it("CI's container smoke test predicts with an API key (the stack has no open routes)", () => {
    for (const file of readdirSync(path.join(ROOT, ".github/workflows"))) {
      const workflow = obj(parse(read(`.github/workflows/${file}`)));
      for (const job of Object.values(obj(workflow.jobs)))
        for (const step of arr(obj(job).steps).map(obj)) {
          const run = typeof step.run === "string" ? step.run : "";
          if (!/\/api\/ml\//.test(run)) continue;
          assert.match(run, /-H "Authorization: Bearer \$\w+"/, `${file}: ${String(step.name)}`);
          assert.match(run, /export API_KEYS\b/, `${file}: ${String(step.name)}`);
        }
    }
  });

  it("production is deployed only after CI passed for the commit", () => {
    const ci = obj(parse(read(".github/workflows/ci.yml")));
    const deploy = obj(parse(read(".github/workflows/deploy.yml")));
    const on = obj(deploy.on);
    assert.equal(on.push, undefined, "deploy.yml runs on push, whether CI passes or not");
    const run = obj(on.workflow_run);
    assert.deepEqual(run.workflows, [ci.name]);
    assert.deepEqual(run.types, ["completed"]);
    const image = obj(obj(deploy.jobs).image);
    assert.match(String(image.if), /workflow_run\.conclusion == 'success'/);
    for (const job of Object.values(obj(deploy.jobs))) {
      const checkout = arr(obj(job).steps)
        .map(obj)
        .find((s) => String(s.uses).startsWith("actions/checkout"));
      assert.equal(obj(checkout?.with).ref, "${{ env.SHA }}");
    }
  });

  it("compose: an API still warming up is not declared unhealthy", () => {
    const check = obj(obj(service(COMPOSE, "api1").healthcheck));
    assert.match(JSON.stringify(check.test), /\/health\/ready/);
    // nginx starts only once both APIs are healthy; compose gives up on an unhealthy one.
    assert.ok(
      seconds(check.start_period) >= DEFAULTS.HEALTH_WARMUP_MS / 1000,
      `api start_period ${String(check.start_period)}`,
    );
  });

  it("compose: Redis with AOF and noeviction, health-gated start-up, production restarts", () => {
    for (const compose of [COMPOSE, COMPOSE_PROD]) {
      const cmd = [service(compose, "redis").command].flat().join(" ");
      assert.match(cmd, /--appendonly"? "?yes/);
      assert.match(cmd, /--maxmemory-policy"? "?noeviction/);
    }
    for (const name of ["api1", "api2", "worker"]) {
      assert.equal(obj(obj(service(COMPOSE, name).depends_on).redis).condition, "service_healthy");
      assert.equal(service(COMPOSE, name).read_only, true, `${name} read_only`);
    }
    for (const name of ["api1", "api2"])
      assert.equal(obj(obj(service(COMPOSE, "nginx").depends_on)[name]).condition, "service_healthy");
    for (const name of Object.keys(obj(COMPOSE_PROD.services)))
      assert.equal(service(COMPOSE_PROD, name).restart, "always", `${name} restart`);
  });

  it("Kubernetes: restricted containers with resources, PDBs, Redis with AOF and noeviction", () => {
    for (const d of INFERLINE_DEPLOYMENTS) {
      const spec = podSpec(k8s("Deployment", d));
      assert.equal(obj(spec.securityContext).runAsNonRoot, true, d);
      assert.equal(spec.automountServiceAccountToken, false, d);
      const spread = arr(spec.topologySpreadConstraints).map(obj);
      assert.ok(
        spread.some(
          (t) =>
            t.topologyKey === "kubernetes.io/hostname" &&
            obj(obj(t.labelSelector).matchLabels)["app.kubernetes.io/name"] === d,
        ),
        `${d} pods are not spread over nodes`,
      );
      for (const c of containers(k8s("Deployment", d))) {
        const sc = obj(c.securityContext);
        assert.equal(sc.allowPrivilegeEscalation, false, d);
        assert.equal(sc.readOnlyRootFilesystem, true, d);
        assert.deepEqual(obj(sc.capabilities).drop, ["ALL"], d);
        const res = obj(c.resources);
        assert.ok(obj(res.requests).cpu && obj(res.requests).memory && obj(res.limits).memory, d);
        // The one place a process writes: /tmp (an emptyDir under the read-only root).
        assert.ok(
          arr(c.volumeMounts).some((m) => obj(m).mountPath === "/tmp"),
          d,
        );
      }
      const pdb = K8S.find(
        (o) =>
          o.kind === "PodDisruptionBudget" &&
          obj(obj(obj(o.spec).selector).matchLabels)["app.kubernetes.io/name"] === d,
      );
      assert.ok(pdb, `${d} has no PodDisruptionBudget`);
    }
    // An autoscaled Deployment leaves its replica count to the autoscaler: with spec.replicas,
    // every `kubectl apply` would reset it (and shrink a scaled-out worker fleet at once).
    const scaled = K8S.filter((o) => o.kind === "HorizontalPodAutoscaler" || o.kind === "ScaledObject").map(
      (o) => obj(obj(o.spec).scaleTargetRef).name,
    );
    assert.deepEqual([...scaled].sort(), INFERLINE_DEPLOYMENTS);
    for (const d of INFERLINE_DEPLOYMENTS)
      assert.equal(obj(k8s("Deployment", d).spec).replicas, undefined, `${d} sets spec.replicas`);
    const rolling = obj(obj(obj(k8s("Deployment", "inferline-api").spec).strategy).rollingUpdate);
    assert.equal(rolling.maxUnavailable, 0);
    const redisSet = k8s("StatefulSet", "inferline-redis");
    assert.equal(podSpec(redisSet).automountServiceAccountToken, false, "redis");
    for (const c of containers(redisSet)) {
      const sc = obj(c.securityContext);
      assert.equal(sc.allowPrivilegeEscalation, false, "redis");
      assert.deepEqual(obj(sc.capabilities).drop, ["ALL"], "redis");
    }
    // Redis answers only the API and worker pods.
    const policy = k8s("NetworkPolicy", "inferline-redis");
    assert.equal(
      obj(obj(obj(policy.spec).podSelector).matchLabels)["app.kubernetes.io/name"],
      "inferline-redis",
    );
    const allowed = arr(obj(policy.spec).ingress)
      .flatMap((r) => arr(obj(r).from))
      .flatMap((f) => arr(obj(obj(f).podSelector).matchExpressions).flatMap((e) => arr(obj(e).values)));
    assert.deepEqual([...allowed].sort(), INFERLINE_DEPLOYMENTS);
    const redis = JSON.stringify(obj(redisSet.spec));
    assert.match(redis, /--appendonly yes/);
    assert.match(redis, /--maxmemory-policy noeviction/);
  });
  it("Redis's maxmemory leaves its memory limit room for an AOF rewrite's fork and client buffers", () => {
    // The rewrite forks; pages written meanwhile are copied, so Redis may need up to about
    // twice its data. A limit close to maxmemory gets Redis OOM-killed under write load.
    const bytes = (v: string) => {
      const m = /^(\d+)\s*(k|kb|ki|m|mb|mi|g|gb|gi)?$/i.exec(v.trim());
      assert.ok(m, `cannot read the size ${v}`);
      const unit = (m[2] ?? "").toLowerCase()[0];
      return Number(m[1]) * (unit === "k" ? 2 ** 10 : unit === "m" ? 2 ** 20 : unit === "g" ? 2 ** 30 : 1);
    };
    const k8sRedis = containers(k8s("StatefulSet", "inferline-redis"))[0]!;
    const k8sMax = /--maxmemory (\S+)/.exec(arr(k8sRedis.args).join(" "))?.[1];
    assert.ok(k8sMax, "k8s Redis sets no --maxmemory");
    const k8sLimit = String(obj(obj(k8sRedis.resources).limits).memory);
    const composeMax = envFile("deploy/env.production.example").REDIS_MAXMEMORY;
    assert.ok(composeMax, "deploy/env.production.example sets no REDIS_MAXMEMORY");
    assert.match(JSON.stringify(service(COMPOSE_PROD, "redis").command), /REDIS_MAXMEMORY:-768mb/);
    const composeLimit = String(service(COMPOSE_PROD, "redis").mem_limit);
    for (const [where, max, limit] of [
      ["k8s", k8sMax, k8sLimit],
      ["compose.prod.yaml", composeMax, composeLimit],
      ["compose.prod.yaml default", "768mb", composeLimit],
    ] as const)
      assert.ok(bytes(max) * 2 <= bytes(limit), `${where}: maxmemory ${max} under a ${limit} limit`);
  });
});

describe("the KEDA trigger counts the jobs waiting in Redis", () => {
  const il = useInferline("keda", { env: { MODELS: "echo" } });

  it("every job is prioritized (LLEN of the wait list misses it); inferline_queue_depth counts it", async () => {
    const query = String(
      obj(arr(obj(k8s("ScaledObject", "inferline-worker").spec).triggers).map(obj)[0]?.metadata).query,
    );
    assert.match(query, /inferline_queue_depth/);
    // No worker runs: the jobs stay queued, one per priority.
    for (const priority of ["high", "normal", "low"])
      assert.equal(
        (await call(il.url, "POST", `/api/ml/echo?priority=${priority}`, { text: priority })).status,
        202,
      );
    const redis = new Redis(REDIS_URL);
    try {
      // The keys as src/queue/keys.ts builds them: <prefix>:{echo}:<BullMQ key>.
      assert.equal(await redis.llen(modelKey(il.prefix, "echo", "wait")), 0);
      assert.equal(await redis.zcard(modelKey(il.prefix, "echo", "prioritized")), 3);
    } finally {
      redis.disconnect();
    }
    const text = await (await fetch(`${il.url}/metrics`)).text();
    assert.match(text, /^inferline_queue_depth\{model="echo",role="api"\} 3$/m);
  });
});
