import cors from "@fastify/cors";
import type { FastifyInstance } from "fastify";
import helmet from "helmet";
import type { Config } from "../../config/index.js";

/**
 * Browser-facing protection: security headers on every response (a CSP that allows no inline
 * or foreign scripts, no MIME sniffing, no framing), and CORS only for CORS_ORIGINS.
 *
 * Helmet's middleware is built once here and applied to every response. (The Fastify plugin
 * builds it anew for each request, parsing the whole policy every time.)
 */
export async function installSecurityHeaders(app: FastifyInstance, config: Config): Promise<void> {
  const applyHeaders = helmet({
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
  app.addHook("onRequest", (request, reply, done) => {
    applyHeaders(request.raw, reply.raw, (err) => done(err instanceof Error ? err : undefined));
  });
  if (config.CORS_ORIGINS && config.CORS_ORIGINS.length > 0) {
    await app.register(cors, {
      origin: [...config.CORS_ORIGINS],
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
      ],
      maxAge: 600,
    });
  }
}
