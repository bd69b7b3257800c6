import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance, RouteOptions } from "fastify";

declare module "fastify" {
  interface FastifyContextConfig {
    /**
     * A body the route checks itself (a model's input, against that model's own schema), as
     * the API description shows it; Fastify does not validate it. `consumes`: its media types
     * when not JSON only.
     */
    documentedBody?: { readonly schema: Record<string, unknown>; readonly consumes?: readonly string[] };
  }
}

/**
 * The longest path parameter (a model name, a job id: `<model>.<32 hex>` with a model name of at
 * most 64 characters) the router takes; a longer one is answered 414 `uri_too_long`.
 */
export const MAX_PARAM_LENGTH = 100;

/** Path parameters as routes declare them: never empty, never over the router's limit. */
export const PATH_PARAMS = {
  /** `{model}`: a model's name. */
  model: { type: "object", properties: { model: { type: "string", minLength: 1, maxLength: 64 } } },
  /** `{jobId}`: `<model>.<32 hex>`. */
  jobId: {
    type: "object",
    properties: { jobId: { type: "string", minLength: 1, maxLength: MAX_PARAM_LENGTH } },
  },
} as const;

/**
 * A model's input as the API description shows it: each model has its own JSON Schema (its
 * `input_schema` in GET /api/models/{model}), which the route checks.
 */
export const MODEL_INPUT = {
  type: "object",
  additionalProperties: true,
  description:
    "The model's input: a JSON object matching the model's `input_schema` (GET /api/models/{model}); a mismatch is 422 invalid_input naming the field",
  example: { text: "The new release is fantastic" },
} as const;

/** Every error code the API can answer with, by HTTP status (kept in step with the catalog by a test). */
export const ERROR_CODES: Readonly<Record<number, readonly string[]>> = {
  400: [
    "malformed_json",
    "invalid_parameter",
    "json_too_deep",
    "malformed_request",
    "malformed_url",
    "bad_request",
  ],
  401: ["unauthorized"],
  403: ["forbidden", "cross_origin_request", "host_not_allowed"],
  404: ["route_not_found", "model_not_found", "version_not_found", "job_not_found"],
  405: ["method_not_allowed"],
  408: ["request_timeout"],
  409: ["job_not_cancelable", "job_not_completed", "feedback_exists", "job_not_failed"],
  413: ["payload_too_large", "batch_too_large"],
  414: ["uri_too_long"],
  415: ["unsupported_media_type"],
  422: ["invalid_input", "idempotency_key_reused"],
  429: ["queue_full", "rate_limited", "too_many_streams"],
  431: ["headers_too_large"],
  500: ["internal_error"],
  503: ["service_unavailable"],
};

const errorSchema = {
  $id: "Error",
  type: "object",
  properties: {
    error: {
      type: "object",
      properties: {
        code: { type: "string", enum: Object.values(ERROR_CODES).flat() },
        message: { type: "string" },
        details: { type: "object", additionalProperties: true },
      },
    },
  },
} as const;

export const jobViewSchema = {
  $id: "JobView",
  type: "object",
  additionalProperties: true,
  properties: {
    job_id: { type: "string", description: "`<model>.<32 hex>`; carries its model." },
    status: { type: "string", enum: ["queued", "active", "completed", "failed", "canceled", "expired"] },
    model: { type: "string" },
    version: { type: "string" },
    priority: { type: "string", enum: ["high", "normal", "low"] },
    created_at: { type: "string", format: "date-time" },
    attempts: { type: "integer" },
    max_attempts: { type: "integer" },
    cached: { type: "boolean" },
    result: { description: "The model's output (completed jobs)." },
    error: {
      type: "object",
      properties: { code: { type: "string" }, message: { type: "string" } },
    },
    timings: {
      type: "object",
      properties: {
        queue_wait_ms: { type: "number" },
        inference_ms: { type: "number" },
        total_ms: { type: "number" },
      },
    },
    batch_size: { type: "integer" },
    finished_at: {
      type: "string",
      format: "date-time",
      description: "When the job ended (a cached answer: when its result was computed).",
    },
    next_attempt_at: { type: "string", format: "date-time" },
    position: {
      type: "integer",
      description:
        "Queued jobs (not waiting to retry), when read: how many jobs of the model's queue run before it (0: next).",
    },
    deadline: { type: "string", format: "date-time" },
    links: {
      type: "object",
      description:
        "`self` (the job's view) and `events` (its event stream). A cached answer has them only while the job that computed it is kept (RESULT_RETENTION_SECONDS from when it finished); past that its links are `{}`.",
      properties: { self: { type: "string" }, events: { type: "string" } },
      additionalProperties: { type: "string" },
    },
  },
} as const;

export const modelViewSchema = {
  $id: "ModelView",
  type: "object",
  additionalProperties: true,
  properties: {
    name: { type: "string" },
    latest_version: { type: "string" },
    description: { type: "string" },
    task: { type: "string" },
    input_schema: { type: "object", additionalProperties: true, description: "JSON Schema of the input" },
    versions: {
      type: "array",
      description: "Every served version, newest first: input schema, labels, batching, cache TTL, training",
      items: { type: "object", additionalProperties: true },
    },
    serving: {
      type: "object",
      nullable: true,
      additionalProperties: true,
      description: "`ready`, workers, queue and recent numbers; null when Redis cannot be read",
    },
    links: { type: "object", additionalProperties: { type: "string" } },
  },
} as const;

/**
 * A JSON object answer described by its main fields; any others are sent as they are (the
 * serializer drops nothing).
 */
export function objectResponse(description: string, properties: Record<string, unknown> = {}) {
  return { description, type: "object", additionalProperties: true, properties } as const;
}

/** A non-JSON answer (HTML, Prometheus text, an event stream), documented by its media types. */
export function mediaResponse(description: string, ...mediaTypes: [string, ...string[]]) {
  return {
    description,
    content: Object.fromEntries(mediaTypes.map((type) => [type, { schema: { type: "string" } }])),
  };
}

const batchViewSchema = {
  $id: "BatchView",
  type: "object",
  properties: {
    model: { type: "string" },
    version: { type: "string" },
    count: { type: "integer" },
    status: {
      type: "string",
      enum: ["completed", "pending"],
      description:
        "`completed` once every job of the batch has ended, however it ended (each job's own `status` says: some may have failed); `pending` while any is queued or running",
    },
    jobs: { type: "array", items: { $ref: "JobView#" } },
  },
} as const;

/** Response headers, as routes document them next to a status. */
export const RESPONSE_HEADERS = {
  location: { type: "string", description: "The job's view, `/api/results/{job_id}`" },
  "retry-after": { type: "integer", description: "Seconds to wait before retrying" },
  "preference-applied": {
    type: "string",
    description: "`wait=N` when the request's `Prefer: wait` was honoured (N capped by WAIT_MAX_SECONDS)",
  },
} as const;

function errorResponse(status: number, extra?: readonly string[]) {
  const codes = extra ?? ERROR_CODES[status] ?? [];
  return { description: `Error; code one of: ${codes.join(", ")}`, $ref: "Error#" };
}

/**
 * Fills in what every protected route can answer: 401/403/429, 400/413/415 for routes with a
 * body, 414 for routes with path parameters, 500 and 503; for /health and /metrics, the 401 and
 * 429 they can give. Routes declare their own specific answers; this only adds what they left
 * out. (Schemas declare no required fields: documentation must never turn a reply into a 500.)
 */
function completeRoute(route: RouteOptions): void {
  const url = route.url;
  if (url.startsWith("/docs")) {
    // The API description is public, like the health probes.
    route.config = { ...route.config, access: "public" };
    return;
  }
  // Its own copy: routes may share one schema object (pause and resume), but not their name.
  const schema = (route.schema = { ...route.schema }) as Record<string, unknown> & {
    response?: Record<string, unknown>;
  };
  const access = (route.config as { access?: string } | undefined)?.access ?? "admin";
  const methods = Array.isArray(route.method) ? route.method : [route.method];
  const add = (status: number, codes?: readonly string[], description?: string) => {
    const response = (schema.response ??= {});
    if (response[status] === undefined && response[String(status)] === undefined)
      response[status] = description
        ? { ...errorResponse(status, codes), description }
        : errorResponse(status, codes);
  };
  // A name code generators use for the call: the method and the path (`postApiMlModel`).
  schema.operationId ??= operationId(methods[0] ?? "GET", url);
  const operations = url.startsWith("/health") || url === "/metrics";
  schema.tags ??= [
    url.startsWith("/dashboard")
      ? "dashboard"
      : operations
        ? "operations"
        : access === "admin"
          ? "admin"
          : "predictions",
  ];
  // A path parameter over the router's limit never reaches the route.
  if (url.includes("/:")) add(414, ["uri_too_long"]);
  if (access === "public") {
    // Probes and metrics answer in their own shapes, even when failing; they need a key when
    // their *_PUBLIC setting is off. Public routes but the probes are rate-limited per address,
    // and one with a body answers for it as any other.
    if (url === "/health" || url === "/metrics") {
      const setting = url === "/health" ? "HEALTH_PUBLIC" : "METRICS_PUBLIC";
      add(401, undefined, `Error; code: unauthorized (only with ${setting}=false)`);
      // A key is optional: needed only with the setting off.
      schema.security ??= [{}, { bearer: [] }, { apiKey: [] }];
    }
    // The probes are exempt (a load balancer polls them), as auth.ts says.
    if (url !== "/health/live" && url !== "/health/ready") add(429, ["rate_limited"]);
    if (methods.some((m) => m === "POST")) {
      add(400);
      add(413, ["payload_too_large"]);
      add(415);
    }
    withRetryAfter(schema.response as Record<string, Record<string, unknown>>);
    return;
  }
  add(401);
  add(403);
  add(429, ["rate_limited"]);
  if (methods.some((m) => m === "POST" || m === "PUT" || m === "PATCH")) {
    add(400);
    add(413, ["payload_too_large"]);
    add(415);
  }
  if (schema.params || schema.querystring) add(400, ["invalid_parameter"]);
  add(500);
  add(503);
  withRetryAfter(schema.response as Record<string, Record<string, unknown>>);
  schema.security ??= [{ bearer: [] }, { apiKey: [] }];
}

/** `POST /api/ml/:model/batch` → `postApiMlModelBatch`. */
function operationId(method: string, url: string): string {
  const words = url.split(/[^A-Za-z0-9]+/).filter((w) => w.length > 0);
  return method.toLowerCase() + words.map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join("");
}

/**
 * Every 429 and 503 of the API says when to come back; a probe's 503 (`/health` unhealthy) is a
 * state, not a refusal.
 */
function withRetryAfter(response: Record<string, Record<string, unknown>>): void {
  for (const status of ["429", "503"])
    if (response[status] && !response[status].headers && response[status].$ref === "Error#")
      response[status] = { ...response[status], headers: { "retry-after": RESPONSE_HEADERS["retry-after"] } };
}

/** OpenAPI 3 document generated from the route schemas; UI at /docs, JSON at /docs/json. */
export async function installOpenApi(app: FastifyInstance, version: string): Promise<void> {
  app.addSchema(errorSchema);
  app.addSchema(jobViewSchema);
  app.addSchema(batchViewSchema);
  app.addSchema(modelViewSchema);
  app.addHook("onRoute", completeRoute);
  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "Inferline",
        version,
        description:
          "Machine-learning models behind an HTTP API that never blocks. Submit with POST /api/ml/{model} (202 + job id, or the result with `Prefer: wait=N`), then poll, wait on or stream /api/results/{job_id}. Every error is `{error: {code, message, details}}`.",
      },
      components: {
        securitySchemes: {
          bearer: { type: "http", scheme: "bearer" },
          apiKey: { type: "apiKey", in: "header", name: "X-API-Key" },
        },
      },
      tags: [
        { name: "predictions", description: "Submit inputs, read results" },
        { name: "operations", description: "Health and metrics" },
        { name: "admin", description: "Needs an admin key" },
        {
          name: "dashboard",
          description: "The live dashboard: its page and assets (admin key or session), sign-in and sign-out",
        },
      ],
    },
    transform: ({ schema, url, route }) => {
      const body = route.config?.documentedBody;
      return {
        url,
        schema: body
          ? { ...schema, body: body.schema, ...(body.consumes && { consumes: body.consumes }) }
          : schema,
      };
    },
    refResolver: {
      buildLocalReference: (json, _base, _fragment, i) =>
        typeof json.$id === "string" ? json.$id : `def-${i}`,
    },
  });
  await app.register(swaggerUi, {
    routePrefix: "/docs",
    uiConfig: { docExpansion: "list" },
    staticCSP: false,
  });
}
