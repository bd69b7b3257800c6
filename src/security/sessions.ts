import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Redis } from "ioredis";
import { RedisUnavailableError } from "../errors/catalog.js";

/**
 * Dashboard sessions: a cookie `<key id>.<session id>.<expiry>.<HMAC>` signed with a server
 * secret, and a record of each live session in Redis (`<prefix>:session:<session id>`, holding
 * the key id, expiring with the session). The signature turns forged or expired cookies away
 * without a Redis call; the record makes signing out final: logout deletes it, and a copy of the
 * cookie is refused from then on, on every API instance. Removing the key from API_KEYS ends its
 * sessions at once too, since each request looks the key id up again.
 *
 * Checking a session costs one Redis read; when Redis does not answer, the request is refused
 * with 503 (never let through: a signed-out session must not come back during an outage).
 */
export class SessionStore {
  private readonly secret: Buffer;

  /**
   * `secret` unset: a random one, so sessions last as long as this process. `redis` undefined
   * (authentication off): no session is ever issued or accepted.
   */
  constructor(
    secret: string | undefined,
    readonly ttlSeconds: number,
    private readonly redis: Redis | undefined,
    private readonly prefix: string,
  ) {
    this.secret = secret === undefined ? randomBytes(32) : Buffer.from(secret, "utf8");
  }

  /** A new session of `keyId`, recorded in Redis; the token is the cookie's value. */
  async issue(keyId: string, nowMs = Date.now()): Promise<string> {
    const id = randomBytes(16).toString("base64url");
    await this.run((redis) => redis.set(this.recordKey(id), keyId, "EX", this.ttlSeconds));
    return this.sign(keyId, id, nowMs);
  }

  /** The key id of a valid, unexpired session that was not signed out, or undefined. */
  async verify(token: string, nowMs = Date.now()): Promise<string | undefined> {
    const s = this.parse(token);
    if (!s || s.expiry * 1000 <= nowMs) return undefined;
    const recorded = await this.run((redis) => redis.get(this.recordKey(s.id)));
    return recorded === s.keyId ? s.keyId : undefined;
  }

  /** Ends a session (signing out); true when it was live. A forged token ends nothing. */
  async revoke(token: string): Promise<boolean> {
    const s = this.parse(token);
    if (!s) return false;
    return (await this.run((redis) => redis.del(this.recordKey(s.id)))) > 0;
  }

  private sign(keyId: string, id: string, nowMs: number): string {
    const payload = `${keyId}.${id}.${Math.floor(nowMs / 1000) + this.ttlSeconds}`;
    return `${payload}.${this.mac(payload)}`;
  }

  /** The parts of a token whose signature holds, whether expired or not. */
  private parse(token: string): { keyId: string; id: string; expiry: number } | undefined {
    const parts = token.split(".");
    if (parts.length !== 4) return undefined;
    const [keyId = "", id = "", expiry = "", mac = ""] = parts;
    const expected = Buffer.from(this.mac(`${keyId}.${id}.${expiry}`));
    const given = Buffer.from(mac);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    if (!/^\d+$/.test(expiry) || id.length === 0) return undefined;
    return { keyId, id, expiry: Number(expiry) };
  }

  private recordKey(id: string): string {
    return `${this.prefix}:session:${id}`;
  }

  private async run<T>(fn: (redis: Redis) => Promise<T>): Promise<T> {
    if (!this.redis) throw new RedisUnavailableError(new Error("sessions are off (no Redis connection)"));
    try {
      return await fn(this.redis);
    } catch (err) {
      throw new RedisUnavailableError(err);
    }
  }

  private mac(payload: string): string {
    return createHmac("sha256", this.secret).update(payload).digest("base64url");
  }
}
