import cors from "@fastify/cors";
import type { FastifyInstance } from "fastify";
import helmet from "helmet";
import type { Config } from "../../config/index.js";

/**
 * Helmet's middleware, built once: sets the security headers on a raw response (a CSP that
 * allows no inline or foreign scripts, no MIME sniffing, no framing). (The Fastify plugin builds
 * it anew for each request, parsing the whole policy every time.)
 */
export function securityHeaders() {
  return helmet({
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
}

export type SecurityHeaders = ReturnType<typeof securityHeaders>;

/**
 * Browser-facing protection: the security headers on every response, and CORS only for
 * CORS_ORIGINS.
 */
export async function installSecurityHeaders(
  app: FastifyInstance,
  config: Config,
  applyHeaders: SecurityHeaders,
): Promise<void> {
  app.addHook("onRequest", (request, reply, done) => {
    applyHeaders(request.raw, reply.raw, (err) => done(err instanceof Error ? err : undefined));
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
