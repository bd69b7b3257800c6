import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Config } from "../config/index.js";
import {
  CrossOriginRequestError,
  ForbiddenError,
  HostNotAllowedError,
  RateLimitedError,
  UnauthorizedError,
} from "../errors/catalog.js";
import {
  addressCaller,
  allows,
  type Principal,
  type RateDecision,
  type RateRule,
  type Security,
  type StreamSlots,
} from "../security/index.js";
import { hostAllowance } from "./allowed-hosts.js";

/**
 * Who may call a route. Routes declare it as `config: { access }`; a route that does not is
 * given one by its path (see `accessFor`), and anything unknown needs an admin key.
 */
export type Access = "public" | "predict" | "admin";

declare module "fastify" {
  interface FastifyInstance {
    /** Open server-sent event streams of this process: `const release = app.streams.acquire()`. */
    streams: StreamSlots;
  }
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    /** The caller's key (or the admin stand-in when AUTH_DISABLED); null on public routes. */
    principal: Principal | null;
  }
}

export const SESSION_COOKIE = "inferline_session";

/** Why a key is refused by a server that has none configured (it does not fall open). */
export const NO_KEYS_CONFIGURED =
  "no API keys are configured on this server (API_KEYS); see `inferline keys create`";

const BY_PATH: readonly [RegExp, Access][] = [
  [/^\/health\/(live|ready)$/, "public"],
  [/^\/api\/(ml|results|models)(\/|$)/, "predict"],
  [/^\/docs(\/|$)/, "public"],
];
/** Probes from load balancers and orchestrators: never rate limited, never touch Redis. */
const PROBES = /^\/health\/(live|ready)$/;

/** The access a route gets: config for /health and /metrics, then its declaration, then its path. */
export function accessFor(url: string, method: string, declared: Access | undefined, config: Config): Access {
  if (url === "/health") return config.HEALTH_PUBLIC ? "public" : "predict";
  if (url === "/metrics") return config.METRICS_PUBLIC ? "public" : "predict";
  // CORS preflights carry no credentials by design.
  if (method === "OPTIONS") return "public";
  if (declared) return declared;
  return BY_PATH.find(([re]) => re.test(url))?.[1] ?? "admin";
}

function presentedKey(req: FastifyRequest): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth === "string" && auth.length > 0) {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth);
    // An Authorization header that is not a bearer token still counts as a (wrong) credential.
    return m?.[1] ?? auth;
  }
  const header = req.headers["x-api-key"];
  return typeof header === "string" && header.length > 0 ? header.trim() : undefined;
}

/** Methods that change nothing, the only ones a session may send from another origin. */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * True when a browser sent the request from a page of another origin. SameSite=Strict keeps
 * the session cookie off requests from other sites, but another port of the same host or a
 * sibling subdomain is the same site: its pages can POST here with the cookie attached (a
 * no-cors fetch without a body needs no preflight). Browsers say where a request comes from in
 * Sec-Fetch-Site; older ones send Origin with every POST.
 */
export function fromOtherOrigin(req: FastifyRequest): boolean {
  const site = req.headers["sec-fetch-site"];
  if (typeof site === "string") return site !== "same-origin";
  const origin = req.headers.origin;
  if (typeof origin !== "string") return false;
  try {
    const from = new URL(origin);
    // A proxy passing nginx's $host drops the port: then the host name alone is compared.
    return /:\d+$/.test(req.host) ? from.host !== req.host : from.hostname !== req.host;
  } catch {
    return true; // "null": a sandboxed or opaque origin
  }
}

/** True when the request's Origin is one CORS_ORIGINS lets call the API from browsers. */
function corsListed(req: FastifyRequest, config: Config): boolean {
  const origin = req.headers.origin;
  return typeof origin === "string" && (config.CORS_ORIGINS?.includes(origin) ?? false);
}

/** Cookies of one name a request carries, at most this many (a session is checked per value). */
const MAX_SAME_NAME_COOKIES = 8;

/**
 * Every value of the cookie `name`, in the order the browser sent them. A browser sends all the
 * cookies of a name it holds: one that a sibling subdomain set for the parent domain (with a
 * longer Path, it comes first) sits next to the API's own, and must not hide it.
 */
export function readCookies(req: FastifyRequest, name: string): string[] {
  const header = req.headers.cookie;
  if (typeof header !== "string") return [];
  const values: string[] = [];
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) values.push(part.slice(i + 1).trim());
    if (values.length === MAX_SAME_NAME_COOKIES) break;
  }
  return values;
}

/** The principal of the first live session among the request's session cookies. */
async function sessionPrincipal(req: FastifyRequest, security: Security): Promise<Principal | undefined> {
  for (const token of readCookies(req, SESSION_COOKIE)) {
    // A forged or expired token is refused before any Redis call.
    const id = await security.sessions.verify(token);
    const principal = id === undefined ? undefined : security.keys.byId(id);
    if (principal) return principal;
  }
  return undefined;
}

function rateHeaders(reply: FastifyReply, d: RateDecision, rule: RateRule): void {
  void reply.headers({
    "ratelimit-limit": String(d.limit),
    "ratelimit-remaining": String(d.remaining),
    "ratelimit-reset": String(Math.ceil(d.resetMs / 1000)),
    "ratelimit-policy": `${rule.burst};w=${Math.max(1, Math.ceil(rule.burst / rule.rps))}`,
  });
}

/**
 * Authentication (API keys, dashboard sessions), authorization by route access, and rate
 * limits shared through Redis. Installed on the root instance before any route, so every
 * route, including the not-found handler, goes through it.
 */
export function installAuth(app: FastifyInstance, config: Config, security: Security): void {
  const keyRule: RateRule = { rps: config.RATE_LIMIT_KEY_RPS, burst: config.RATE_LIMIT_KEY_BURST };
  const ipRule: RateRule = { rps: config.RATE_LIMIT_IP_RPS, burst: config.RATE_LIMIT_IP_BURST };
  const hostAllowed = hostAllowance(config.HOST, config.ALLOWED_HOSTS);

  app.decorate("streams", security.streams);
  app.decorateRequest("principal", null);
  app.addHook("onRoute", (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const declared = route.config?.access;
    const access = accessFor(route.url, String(methods[0]), declared, config);
    route.config = { ...route.config, access };
  });

  // The caller's key is worked out only when a limit is in force (an address is parsed for it).
  const limit = async (reply: FastifyReply, caller: () => string, rule: RateRule) => {
    if (rule.rps <= 0 || !security.limiter) return;
    const d = await security.limiter.take(caller(), rule);
    if (!d) return;
    rateHeaders(reply, d, rule);
    if (!d.allowed) throw new RateLimitedError(Math.max(1, Math.ceil(d.retryAfterMs / 1000)));
  };

  app.addHook("onRequest", async (req, reply) => {
    const path = req.routeOptions.url ?? "";
    // Unknown routes need a key of any scope before they learn that the route does not exist.
    const access: Access = req.is404 ? "predict" : (req.routeOptions.config.access ?? "admin");
    // With no key to present, a page of a name that an attacker's DNS points at this machine
    // would be the API's own origin. The Host header as sent, never X-Forwarded-Host: such a
    // page may set that header itself. Probes keep answering whatever name they use.
    const host = req.headers.host;
    if (config.AUTH_DISABLED && host !== undefined && !PROBES.test(path) && !hostAllowed(host))
      throw new HostNotAllowedError(host.slice(0, 255));
    if (access === "public") {
      if (!PROBES.test(path)) await limit(reply, () => `ip:${addressCaller(req.ip)}`, ipRule);
      return;
    }
    if (config.AUTH_DISABLED) {
      // No key to present, so any page the operator's browser opens could send writes here
      // (a closed machine is still open to its own browser): only the API's own pages, pages of
      // CORS_ORIGINS, and clients that are no browser may change anything.
      if (!SAFE_METHODS.has(req.method) && fromOtherOrigin(req) && !corsListed(req, config))
        throw new CrossOriginRequestError(
          "with authentication off (AUTH_DISABLED), a browser may change something only from the API's own pages or a CORS_ORIGINS origin",
        );
      req.principal = { id: "anonymous", name: "anonymous", scope: "admin" };
      await limit(reply, () => `anon:${addressCaller(req.ip)}`, keyRule);
      return;
    }

    const key = presentedKey(req);
    let principal: Principal | undefined;
    if (key !== undefined) principal = security.keys.verify(key);
    else {
      principal = await sessionPrincipal(req, security);
      if (principal && !SAFE_METHODS.has(req.method) && fromOtherOrigin(req))
        throw new CrossOriginRequestError();
    }
    if (!principal) {
      await limit(reply, () => `ip:${addressCaller(req.ip)}`, ipRule);
      const browser = req.method === "GET" && (req.headers.accept ?? "").includes("text/html");
      if (browser && /^\/dashboard(\/|$|\?)/.test(req.url)) return reply.redirect("/dashboard/login", 303);
      throw new UnauthorizedError(
        key === undefined
          ? undefined
          : security.keys.size === 0
            ? NO_KEYS_CONFIGURED
            : "the API key is not valid",
      );
    }
    req.principal = principal;
    await limit(reply, () => `key:${principal.id}`, keyRule);
    if (!allows(principal.scope, access === "admin" ? "admin" : "predict")) throw new ForbiddenError(access);
  });
}
