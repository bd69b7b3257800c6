import type { IncomingMessage, ServerResponse } from "node:http";
import cors from "@fastify/cors";
import type { FastifyInstance } from "fastify";
import helmet from "helmet";
import type { Config } from "../../config/index.js";

/**
 * The security headers every response carries (a CSP that allows no inline or foreign scripts,
 * no MIME sniffing, no framing), as helmet sets them, worked out once: helmet's middleware is
 * run against a response that only records what it is told, and the headers it set are then
 * copied onto each real response. (Run per request, helmet rebuilds every header, the CSP
 * from its directives, each time: a cost on every answer for a result that never changes.)
 */
export function securityHeaders(): SecurityHeaders {
  const middleware = helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        // Inline style attributes are harmless without script; the docs UI uses them.
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
      },
    },
    frameguard: { action: "deny" },
    // HTTPS is the proxy's business; the header is ignored over plain HTTP anyway.
    strictTransportSecurity: { maxAge: 15_552_000, includeSubDomains: false },
  });
  // helmet also removes X-Powered-By, which nothing here sets: only the headers it sets are kept.
  const headers = new Map<string, string>();
  const recorder = {
    setHeader: (name: string, value: unknown) => headers.set(name.toLowerCase(), String(value)),
    removeHeader: (name: string) => headers.delete(name.toLowerCase()),
  };
  let failure: unknown;
  middleware(
    {} as IncomingMessage,
    recorder as unknown as ServerResponse,
    (err?: unknown) => (failure = err),
  );
  if (failure !== undefined) throw new Error("helmet refused its options", { cause: failure });
  const entries = [...headers];
  return (res) => {
    for (const [name, value] of entries) res.setHeader(name, value);
  };
}

/** Sets the security headers on a raw response. */
export type SecurityHeaders = (res: ServerResponse) => void;

/**
 * Browser-facing protection: the security headers on every response, and CORS only for
 * CORS_ORIGINS.
 */
export async function installSecurityHeaders(
  app: FastifyInstance,
  config: Config,
  applyHeaders: SecurityHeaders,
): Promise<void> {
  app.addHook("onRequest", (_request, reply, done) => {
    applyHeaders(reply.raw);
    done();
  });
  if (config.CORS_ORIGINS && config.CORS_ORIGINS.length > 0) {
    await app.register(cors, {
      origin: [...config.CORS_ORIGINS],
      // An OPTIONS request that is no preflight gets the CORS answer too, not a text error.
      strictPreflight: false,
      methods: ["GET", "POST", "DELETE"],
      allowedHeaders: [
        "authorization",
        "x-api-key",
        "content-type",
        "prefer",
        "idempotency-key",
        "x-request-id",
      ],
      exposedHeaders: [
        "location",
        "retry-after",
        "preference-applied",
        "x-request-id",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "ratelimit-policy",
      ],
      maxAge: 600,
    });
  }
}
