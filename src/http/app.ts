import { readFileSync } from "node:fs";
import path from "node:path";
import { PACKAGE_ROOT } from "../config/index.js";
import { decimalIntegers } from "./decimal-integers.js";
import { installOpenApi, MAX_PARAM_LENGTH } from "./openapi.js";
import { randomUUID } from "node:crypto";
import { Ajv } from "ajv";
import Fastify, { type FastifyInstance } from "fastify";
import { InvalidParameterError, ServiceUnavailableError } from "../errors/catalog.js";
import { installAuth } from "./auth.js";
import { clientErrorHandler, frameworkErrors, refuseConnect } from "./plugins/client-errors.js";
import { dashboardLogin } from "./plugins/dashboard-login.js";
import { installJsonBody } from "./plugins/json-body.js";
import { installSecurityHeaders, securityHeaders } from "./plugins/security-headers.js";
import { recordClientHangUps, RequestLog } from "./request-log.js";
import { installErrorHandling } from "./error-handler.js";
import { adminCacheRoutes } from "./routes/admin-cache.js";
import { adminJobRoutes } from "./routes/admin-jobs.js";
import { adminModelRoutes } from "./routes/admin-models.js";
import { dashboardRoutes } from "./routes/dashboard.js";
import { feedbackRoutes } from "./routes/feedback.js";
import { healthRoutes } from "./routes/health.js";
import { installRequestMetrics, metricsRoutes } from "./routes/metrics.js";
import { modelRoutes } from "./routes/models.js";
import { predictRoutes } from "./routes/predict.js";
import { resultRoutes } from "./routes/results.js";
import { statsRoutes } from "./routes/stats.js";
import type { HttpDeps } from "./types.js";

const PACKAGE_VERSION = (
  JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }
).version;

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Route schemas are checked as Fastify does (defaults filled in, first error only, nothing
 * removed), but only the query string, path and headers, which arrive as text, are converted to
 * the types their schemas name: a JSON body is taken as sent (`{"inputs": "x"}` is not an array).
 */
const AJV_OPTIONS = { useDefaults: true, removeAdditional: false, allErrors: false, strict: false } as const;
const coercingAjv = new Ajv({ ...AJV_OPTIONS, coerceTypes: "array" });
const exactAjv = new Ajv({ ...AJV_OPTIONS, coerceTypes: false });

/** Builds the API. Wires routes to the services it is given; opens no port itself. */
export async function buildApp(deps: HttpDeps): Promise<FastifyInstance> {
  const { config } = deps;
  const applySecurityHeaders = securityHeaders();
  const app = Fastify({
    loggerInstance: deps.logger,
    bodyLimit: config.BODY_LIMIT_BYTES,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Not taken from the header as it is: genReqId checks a caller's id first.
    requestIdHeader: false,
    logController: new RequestLog(),
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Both answered below in the API's error shape (Node and Fastify would answer them bare).
    http: { requireHostHeader: false },
    return503OnClosing: false,
    trustProxy: config.TRUST_PROXY,
    clientErrorHandler,
    frameworkErrors: frameworkErrors(applySecurityHeaders),
    // Long `Prefer: wait` requests must outlive the defaults.
    requestTimeout: (config.WAIT_MAX_SECONDS + 30) * 1000,
  });
  // The methods the routes take, as they are added (OPTIONS is answered for every path).
  const methods = new Set<string>(["OPTIONS"]);
  app.addHook("onRoute", (route) => [route.method].flat().forEach((m) => methods.add(m)));
  app.server.on(
    "connect",
    refuseConnect(() => [...methods]),
  );
  // Expect: 100-continue: Node would invite every such body. One declared over the limit is
  // refused (413) before the client sends it, as RFC 9110 (10.1.1) means the header for.
  app.server.on("checkContinue", (req, res) => {
    if (!(Number(req.headers["content-length"]) > config.BODY_LIMIT_BYTES)) res.writeContinue();
    app.server.emit("request", req, res);
  });
  app.setValidatorCompiler(({ schema, httpPart }) =>
    httpPart === "body" ? exactAjv.compile(schema) : decimalIntegers(schema, coercingAjv.compile(schema)),
  );

  // Only JSON bodies: text/plain would otherwise parse into a string.
  app.removeContentTypeParser("text/plain");
  installJsonBody(app, config.JSON_MAX_DEPTH);
  installRequestMetrics(app, deps.telemetry);
  recordClientHangUps(app, (route, method, status, seconds) =>
    deps.telemetry.requestFinished(route, method, status, seconds),
  );
  // Hooks that never wait take a callback: an async one costs a promise per request each.
  app.addHook("onRequest", (request, reply, done) => {
    void reply.header("x-request-id", request.id);
    done();
  });
  // Time spent in this process, for clients and benchmarks (W3C Server-Timing).
  app.addHook("onSend", (_request, reply, payload, done) => {
    void reply.header("server-timing", `app;dur=${reply.elapsedTime.toFixed(3)}`);
    // Shutting down: a kept-alive connection would hold the close until its timeout.
    if (deps.health.isDraining()) void reply.header("connection", "close");
    done(null, payload);
  });
  installErrorHandling(app, {
    bodyLimit: config.BODY_LIMIT_BYTES,
    retryAfterSeconds: config.RETRY_AFTER_UNAVAILABLE_SECONDS,
  });

  // Protection comes before every route: headers, CORS, then keys, scopes and rate limits.
  const { security } = deps;
  await installSecurityHeaders(app, config, applySecurityHeaders);
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
  });
  app.addHook("onRequest", (request, reply, done) => {
    if (closing) {
      void reply.header("connection", "close");
      done(new ServiceUnavailableError("this API process is shutting down; retry", 1));
    } else if (request.raw.httpVersion === "1.1" && !request.headers.host)
      done(new InvalidParameterError("headers.host is required in HTTP/1.1", { field: "headers.host" }));
    else done();
  });
  installAuth(app, config, security);
  // Before every route, so that each is in the API's description.
  await installOpenApi(app, PACKAGE_VERSION);
  await app.register(dashboardLogin, { config, security });
  await app.register(healthRoutes, deps);
  await app.register(modelRoutes, deps);
  await app.register(predictRoutes, deps);
  await app.register(resultRoutes, deps);
  await app.register(adminModelRoutes, deps);
  await app.register(metricsRoutes, deps);
  await app.register(statsRoutes, deps);
  await app.register(feedbackRoutes, deps);
  await app.register(adminJobRoutes, deps);
  await app.register(dashboardRoutes, deps);
  await app.register(adminCacheRoutes, deps);
  return app;
}
