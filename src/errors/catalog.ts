/**
 * The one catalog of errors Inferline reports. Every client-facing error is one of these
 * classes: a stable `code`, an HTTP status, a message naming the field at fault, and optional
 * details. The HTTP error handler turns them into `{error: {code, message, details}}`.
 */
export abstract class AppError extends Error {
  abstract readonly code: string;
  abstract readonly status: number;
  /** Extra response headers (Retry-After, Allow, ...). */
  headers: Record<string, string> = {};
  constructor(
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** The answer's body: `{error: {code, message, details}}`, the one shape of every error. */
  body(): { error: { code: string; message: string; details: unknown } } {
    return { error: { code: this.code, message: this.message, details: this.details ?? {} } };
  }
}

export class MalformedJsonError extends AppError {
  readonly code = "malformed_json";
  readonly status = 400;
}

/** Requests the HTTP layer could not read or route, answered before any route runs. */
export class HeadersTooLargeError extends AppError {
  readonly code = "headers_too_large";
  readonly status = 431;
}

/** The request did not arrive whole within the server's request timeout. */
export class RequestTimeoutError extends AppError {
  readonly code = "request_timeout";
  readonly status = 408;
}

/** Not HTTP Node's parser accepts (bad header bytes, smuggling attempts). */
export class MalformedRequestError extends AppError {
  readonly code = "malformed_request";
  readonly status = 400;
}

export class UriTooLongError extends AppError {
  readonly code = "uri_too_long";
  readonly status = 414;
}

export class MalformedUrlError extends AppError {
  readonly code = "malformed_url";
  readonly status = 400;
}

/** A request the router could not take, for a reason none of the others names. */
export class BadRequestError extends AppError {
  readonly code = "bad_request";
  readonly status = 400;
}

export class InvalidParameterError extends AppError {
  readonly code = "invalid_parameter";
  readonly status = 400;
}

export class RouteNotFoundError extends AppError {
  readonly code = "route_not_found";
  readonly status = 404;
}

/** The path exists, but not with this method; `Allow` lists the methods it takes (RFC 9110 §15.5.6). */
export class MethodNotAllowedError extends AppError {
  readonly code = "method_not_allowed";
  readonly status = 405;
  constructor(method: string, path: string, allowed: readonly string[]) {
    const methods = Array.from(allowed);
    super(`${method} is not allowed on ${path}; it takes ${methods.join(", ")}`, {
      method,
      allowed: methods,
    });
    this.headers.allow = methods.join(", ");
  }
}

export class ModelNotFoundError extends AppError {
  readonly code = "model_not_found";
  readonly status = 404;
  constructor(model: string, available: readonly string[]) {
    super(`model "${model}" does not exist`, { model, available });
  }
}

export class VersionNotFoundError extends AppError {
  readonly code = "version_not_found";
  readonly status = 404;
  /** `why`: the version exists but cannot be served (it failed to load), and why. */
  constructor(model: string, version: string, available: readonly string[], why?: string) {
    super(
      why === undefined
        ? `model "${model}" has no version "${version}"`
        : `model "${model}" version "${version}" is not served: ${why}`,
      { model, version, available },
    );
  }
}

export class JobNotFoundError extends AppError {
  readonly code = "job_not_found";
  readonly status = 404;
  constructor(jobId: string) {
    super(`job "${jobId}" does not exist or its result has expired`, { job_id: jobId });
  }
}

export class JobNotCancelableError extends AppError {
  readonly code = "job_not_cancelable";
  readonly status = 409;
  constructor(jobId: string, status: string, why?: string) {
    super(`job "${jobId}" is ${status} and can no longer be canceled${why ? `: ${why}` : ""}`, {
      job_id: jobId,
      status,
    });
  }
}

export class JobNotCompletedError extends AppError {
  readonly code = "job_not_completed";
  readonly status = 409;
}

export class FeedbackExistsError extends AppError {
  readonly code = "feedback_exists";
  readonly status = 409;
}

export class JobNotFailedError extends AppError {
  readonly code = "job_not_failed";
  readonly status = 409;
}

export class PayloadTooLargeError extends AppError {
  readonly code = "payload_too_large";
  readonly status = 413;
}

export class UnsupportedMediaTypeError extends AppError {
  readonly code = "unsupported_media_type";
  readonly status = 415;
}

export class InvalidInputError extends AppError {
  readonly code = "invalid_input";
  readonly status = 422;
}

export class IdempotencyKeyReusedError extends AppError {
  readonly code = "idempotency_key_reused";
  readonly status = 422;
  constructor(key: string, jobId: string) {
    super(
      `Idempotency-Key "${key}" was already used with a different request (body, version, priority or whether timeout_ms is given)`,
      { job_id: jobId },
    );
  }
}

export class QueueFullError extends AppError {
  readonly code = "queue_full";
  readonly status = 429;
  constructor(model: string, depth: number, retryAfterSeconds: number) {
    super(`the queue of model "${model}" is full (${depth} jobs); retry later`, {
      model,
      depth,
      retry_after_seconds: retryAfterSeconds,
    });
    this.headers["retry-after"] = String(retryAfterSeconds);
  }
}

export class UnauthorizedError extends AppError {
  readonly code = "unauthorized";
  readonly status = 401;
  constructor(message = "this route needs an API key: Authorization: Bearer <key> or X-API-Key: <key>") {
    super(message);
    this.headers["www-authenticate"] = 'Bearer realm="inferline"';
  }
}

export class ForbiddenError extends AppError {
  readonly code = "forbidden";
  readonly status = 403;
  constructor(needed: string) {
    super(`this route needs a key with the "${needed}" scope`, { needed_scope: needed });
  }
}

export class CrossOriginRequestError extends AppError {
  readonly code = "cross_origin_request";
  readonly status = 403;
  constructor(
    message = "a request signed in by the dashboard session must come from the dashboard's own pages; other clients send an API key",
  ) {
    super(message);
  }
}

/**
 * With authentication off, a Host header that names none of the server's allowed hosts: a page
 * of a name that an attacker's DNS points at this machine would otherwise count as the API's own.
 */
export class HostNotAllowedError extends AppError {
  readonly code = "host_not_allowed";
  readonly status = 403;
  constructor(host: string) {
    super(
      `the Host header "${host}" is not a name of this server; with authentication off (AUTH_DISABLED) only loopback names, IP addresses, HOST and ALLOWED_HOSTS are answered`,
      { host },
    );
  }
}

export class JsonTooDeepError extends AppError {
  readonly code = "json_too_deep";
  readonly status = 400;
  constructor(maxDepth: number) {
    super(`request body nests arrays/objects deeper than ${maxDepth} levels`, { max_depth: maxDepth });
  }
}

export class BatchTooLargeError extends AppError {
  readonly code = "batch_too_large";
  readonly status = 413;
  /**
   * `items` over `maxItems`: inputs over BATCH_MAX_ITEMS or, with `model`, inputs needing a
   * job of their own over that model's queue cap (a batch no wait could ever admit).
   */
  constructor(items: number, maxItems: number, model?: string) {
    super(
      model === undefined
        ? `a batch may carry at most ${maxItems} inputs; this one has ${items}`
        : `the queue of model "${model}" holds at most ${maxItems} jobs; this batch needs ${items} new ones, so it could never be admitted`,
      { items, max_items: maxItems, ...(model === undefined ? {} : { model }) },
    );
  }
}

export class RateLimitedError extends AppError {
  readonly code = "rate_limited";
  readonly status = 429;
  constructor(retryAfterSeconds: number) {
    super("too many requests for this key or address; retry later", {
      retry_after_seconds: retryAfterSeconds,
    });
    this.headers["retry-after"] = String(retryAfterSeconds);
  }
}

export class TooManyStreamsError extends AppError {
  readonly code = "too_many_streams";
  readonly status = 429;
  constructor(maxStreams: number, retryAfterSeconds: number) {
    super(`this server already holds ${maxStreams} open event streams; retry later or poll`, {
      max_streams: maxStreams,
      retry_after_seconds: retryAfterSeconds,
    });
    this.headers["retry-after"] = String(retryAfterSeconds);
  }
}

export class ServiceUnavailableError extends AppError {
  readonly code = "service_unavailable";
  readonly status = 503;
  /** `details`: what the client needs beyond the wait to retry well (what was done already). */
  constructor(message: string, retryAfterSeconds: number, details: Record<string, unknown> = {}) {
    super(message, { ...details, retry_after_seconds: retryAfterSeconds });
    this.headers["retry-after"] = String(retryAfterSeconds);
  }
}

export class InternalError extends AppError {
  readonly code = "internal_error";
  readonly status = 500;
  constructor() {
    super("internal error; the request id identifies it in the server logs");
  }
}

/** Thrown by Redis-backed modules when Redis does not answer in time. */
/**
 * Redis could not serve a call: unreachable, too slow, or refusing it (full, read-only, loading).
 * The message names the cause, for the logs; clients get a 503 (ServiceUnavailableError).
 */
export class RedisUnavailableError extends Error {
  constructor(cause?: unknown) {
    super(
      cause instanceof Error ? `Redis could not serve the call: ${cause.message}` : "Redis is unreachable",
      {
        cause,
      },
    );
    this.name = "RedisUnavailableError";
  }
}

/**
 * Job failures, as the worker records them and the API reports them. `retryable: false`
 * errors fail the job at once (bad input found by the worker); others are retried with backoff
 * and the last attempt's error is the job's.
 */
export class JobError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = "JobError";
  }
  /** How a job error travels through BullMQ's failedReason string. */
  toReason(): string {
    return `[${this.code}] ${this.message}`;
  }
  static fromReason(reason: string | undefined): { code: string; message: string } {
    const m = /^\[([a-z_]+)\] ([\s\S]*)$/.exec(reason ?? "");
    if (m?.[1] !== undefined && m[2] !== undefined) return { code: m[1], message: m[2] };
    if (reason?.includes("stalled more than allowable limit")) {
      return { code: "worker_lost", message: "the job's worker stopped too many times while running it" };
    }
    return { code: "inference_failed", message: reason ?? "unknown error" };
  }
}

/**
 * An ONNX inference batch that ran longer than its timeout (INFERENCE_TIMEOUT_MS or the
 * manifest's `onnx.inferenceTimeoutMs`). Retryable: the worker replaced the session, and the
 * retry may land in another batch or on another worker.
 */
export class InferenceTimeoutError extends JobError {
  constructor(message: string) {
    super("inference_timeout", message, true);
  }
}

export const jobErrors = {
  expired: (message: string) => new JobError("expired", message, false),
  invalidInput: (message: string) => new JobError("invalid_input", message, false),
  inference: (message: string) => new JobError("inference_failed", message, true),
  modelUnavailable: (message: string) => new JobError("model_unavailable", message, true),
  /**
   * The worker that took the job does not serve its version (it dropped it in a reload, or never
   * loaded it). Retried: while workers reload one after another, another one may still serve it.
   */
  versionNotServed: (model: string, version: string) =>
    new JobError("version_not_found", `model ${model} version ${version} is not served by this worker`, true),
  inferenceTimeout: (message: string) => new InferenceTimeoutError(message),
};
