import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Dashboard sessions: a cookie `<key id>.<expiry>.<HMAC>` signed with a server secret. Nothing
 * is stored server-side; removing the key from API_KEYS ends its sessions at once, since each
 * request looks the key id up again.
 */
export class SessionSigner {
  private readonly secret: Buffer;

  /** `secret` unset: a random one, so sessions last as long as this process. */
  constructor(
    secret: string | undefined,
    readonly ttlSeconds: number,
  ) {
    this.secret = secret === undefined ? randomBytes(32) : Buffer.from(secret, "utf8");
  }

  issue(keyId: string, nowMs = Date.now()): string {
    const payload = `${keyId}.${Math.floor(nowMs / 1000) + this.ttlSeconds}`;
    return `${payload}.${this.mac(payload)}`;
  }

  /** The key id of a valid, unexpired token, or undefined. */
  verify(token: string, nowMs = Date.now()): string | undefined {
    const parts = token.split(".");
    if (parts.length !== 3) return undefined;
    const [keyId = "", expiry = "", mac = ""] = parts;
    const expected = Buffer.from(this.mac(`${keyId}.${expiry}`));
    const given = Buffer.from(mac);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    if (!/^\d+$/.test(expiry) || Number(expiry) * 1000 <= nowMs) return undefined;
    return keyId;
  }

  private mac(payload: string): string {
    return createHmac("sha256", this.secret).update(payload).digest("base64url");
  }
}
