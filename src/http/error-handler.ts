import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  AppError,
  BadRequestError,
  InternalError,
  InvalidParameterError,
  MalformedJsonError,
  MethodNotAllowedError,
  PayloadTooLargeError,
  RedisUnavailableError,
  RouteNotFoundError,
  ServiceUnavailableError,
  UnsupportedMediaTypeError,
} from "../errors/catalog.js";
import { ajvMessage } from "../models/validation.js";
import { dashboardErrorPage, isDashboardPage } from "./plugins/dashboard-login.js";

/** Methods a route may be declared with; OPTIONS is answered for every routed path. */
const ROUTED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] as const;

declare module "fastify" {
  interface FastifyContextConfig {
    /** What a route's body may be, as its 415 says it (default: JSON). */
    bodies?: string;
  }
}

/** Maps Fastify's own errors (parsing, limits, schema checks) onto the catalog. */
function fromFastify(err: FastifyError, request: FastifyRequest, bodyLimit: number): AppError | undefined {
  switch (err.code) {
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new UnsupportedMediaTypeError(
        `request body must be ${request.routeOptions.config.bodies ?? "JSON (Content-Type: application/json)"}`,
      );
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new PayloadTooLargeError(`request body is larger than ${bodyLimit} bytes`, {
        limit_bytes: bodyLimit,
      });
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new MalformedJsonError("request body is empty; send a JSON object");
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return new MalformedJsonError(`request body is not valid JSON: ${err.message}`);
    case "FST_ERR_VALIDATION": {
      const v = err.validation?.[0];
      const params = (v?.params ?? {}) as { missingProperty?: string; additionalProperty?: string };
      const named = params.missingProperty ?? params.additionalProperty;
      const field = [
        err.validationContext ?? "request",
        ...(v?.instancePath ?? "").split("/").filter(Boolean),
        ...(named === undefined ? [] : [named]),
      ].join(".");
      const message = !v
        ? "is invalid"
        : params.missingProperty !== undefined
          ? "is required"
          : params.additionalProperty !== undefined
            ? "is not allowed"
            : ajvMessage(v);
      return new InvalidParameterError(`${field} ${message}`, { field });
    }
  }
  if (err instanceof SyntaxError || (err.statusCode === 400 && /JSON/i.test(err.message))) {
    return new MalformedJsonError(`request body is not valid JSON: ${err.message}`);
  }
  return undefined;
}

/**
 * A client error a plugin raised in its own terms, e.g. the docs' file server refusing a path
 * that climbs out of its folder (403) or holds a NUL byte (400): the client's fault, never a 500.
 * A file that may not be served is answered as one that is not there.
 */
function fromClientError(err: FastifyError, request: FastifyRequest): AppError | undefined {
  const status = err.statusCode ?? 0;
  if (status < 400 || status > 499) return undefined;
  const path = request.url.split("?")[0] ?? "/";
  if (status === 403 || status === 404) return new RouteNotFoundError(`nothing to serve at ${path}`);
  return new BadRequestError(`the request for ${path} could not be served: ${err.message}`);
}

export function installErrorHandling(
  app: FastifyInstance,
  opts: { bodyLimit: number; retryAfterSeconds: number },
) {
  app.setErrorHandler((raw: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    let err: AppError;
    if (raw instanceof AppError) err = raw;
    else if (raw instanceof RedisUnavailableError) {
      err = new ServiceUnavailableError(
        "the queue store (Redis) cannot serve requests right now; retry shortly",
        opts.retryAfterSeconds,
      );
    } else {
      // A route may take less than the global limit (the dashboard's login form).
      err =
        fromFastify(raw, request, request.routeOptions.bodyLimit ?? opts.bodyLimit) ??
        fromClientError(raw, request) ??
        new InternalError();
    }
    if (err.status === 503) {
      request.log.warn(
        { code: err.code, event: "request_unavailable", err: (raw as Error).message },
        err.message,
      );
    } else if (err.status >= 500) {
      request.log.error({ err: raw, event: "request_error" }, "request failed");
    } else {
      request.log.info({ code: err.code, event: "request_rejected" }, err.message);
    }
    void reply.code(err.status).headers(err.headers);
    if (isDashboardPage(request))
      void reply
        .type("text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .send(dashboardErrorPage(request, err));
    else void reply.send(err.body());
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split("?")[0] ?? "/";
    // A path that exists with other methods is a 405 naming them (an OPTIONS request gets them
    // as its answer), not a 404 that tells the client the resource is not there.
    const allowed: string[] = ROUTED_METHODS.filter(
      (method) => app.findRoute({ method, url: path }) !== null,
    );
    // A route that took the request and found nothing (reply.callNotFound) is a 404 all the same.
    if (allowed.length > 0 && !allowed.includes(request.method)) {
      allowed.push("OPTIONS");
      if (request.method === "OPTIONS") return reply.code(204).header("allow", allowed.join(", ")).send();
      const err = new MethodNotAllowedError(request.method, path, allowed);
      request.log.info({ code: err.code, event: "request_rejected" }, err.message);
      return reply.code(err.status).headers(err.headers).send(err.body());
    }
    // The dashboard's address as often typed; one address keeps links and bookmarks alike.
    if (path === "/dashboard/" && (request.method === "GET" || request.method === "HEAD"))
      return reply.redirect(`/dashboard${request.url.slice(path.length)}`, 301);
    const err = new RouteNotFoundError(`no route ${request.method} ${path}`);
    void reply.code(err.status);
    if (isDashboardPage(request))
      return reply
        .type("text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .send(dashboardErrorPage(request, err));
    return reply.send(err.body());
  });
}
