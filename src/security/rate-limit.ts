import type { Redis } from "ioredis";
import ipaddr from "ipaddr.js";

/** A rate: `rps` requests per second on average, up to `burst` at once. */
export interface RateRule {
  readonly rps: number;
  readonly burst: number;
}

export interface RateDecision {
  readonly allowed: boolean;
  /** Requests allowed at once (the burst). */
  readonly limit: number;
  readonly remaining: number;
  /** When allowed is false: how long until one more request is allowed (ms). */
  readonly retryAfterMs: number;
  /** How long until the full burst is available again (ms). */
  readonly resetMs: number;
}

/*
 * GCRA (a token bucket kept as one timestamp, the "theoretical arrival time"). Time comes from
 * Redis, so every API instance shares one clock and one bucket per caller.
 * KEYS[1] bucket; ARGV[1] ms per request; ARGV[2] burst. Returns {allowed, remaining,
 * retry_after_ms, reset_ms}.
 */
const GCRA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local capacity = interval * burst
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > capacity then
  return {0, 0, math.ceil(ahead - capacity), math.ceil(tat - now)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.max(1, math.ceil(ahead)))
return {1, math.floor((capacity - ahead) / interval), 0, math.ceil(ahead)}
`;

type Gcra = (key: string, interval: string, burst: string) => Promise<[number, number, number, number]>;

/**
 * Rate limits shared by every API instance through Redis. When Redis does not answer, requests
 * are let through (the routes behind answer 503 on their own); a limiter must not turn a short
 * Redis blip into refusing health checks and logins.
 */
export class RateLimiter {
  private readonly gcra: Gcra;

  constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    redis.defineCommand("inferlineGcra", { numberOfKeys: 1, lua: GCRA });
    const bound = (redis as unknown as { inferlineGcra: Gcra }).inferlineGcra.bind(redis);
    this.gcra = bound;
  }

  /** Counts one request of `caller` against `rule`; undefined when Redis did not answer. */
  async take(caller: string, rule: RateRule): Promise<RateDecision | undefined> {
    const interval = 1000 / rule.rps;
    try {
      const [allowed, remaining, retryAfterMs, resetMs] = await this.gcra(
        `${this.prefix}:ratelimit:${caller}`,
        String(interval),
        String(rule.burst),
      );
      return { allowed: allowed === 1, limit: rule.burst, remaining, retryAfterMs, resetMs };
    } catch {
      return undefined;
    }
  }
}

/**
 * The caller an address stands for in the per-address limit. An IPv6 host is handed a whole /64
 * (and can use any address in it), so a bucket per IPv6 address would give one client 2^64 of
 * them: IPv6 addresses count per /64 network. IPv4 addresses, also written as IPv4-mapped IPv6
 * (`::ffff:203.0.113.7`, what a dual-stack listener sees), count one by one.
 */
export function addressCaller(ip: string): string {
  if (!ipaddr.isValid(ip)) return ip;
  const address = ipaddr.process(ip); // ::ffff:a.b.c.d becomes a.b.c.d
  if (address.kind() === "ipv4") return address.toString();
  const network = (address as ipaddr.IPv6).parts.slice(0, 4).map((part) => part.toString(16));
  return `${network.join(":")}::/64`;
}
