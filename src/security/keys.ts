import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** What a key may do. `admin` implies `predict`. */
export type Scope = "predict" | "admin";

/** One configured key: the SHA-256 of the key (hex), never the key itself. */
export interface KeyEntry {
  readonly hash: string;
  readonly scope: Scope;
  readonly name: string;
}

/** Who is calling, as far as authorization and rate limits care. */
export interface Principal {
  /** Stable, non-secret id of the key (a prefix of its hash); sessions and rate limits use it. */
  readonly id: string;
  readonly name: string;
  readonly scope: Scope;
}

const KEY_PREFIX = "ilk_";
/** Keys longer than this are not hashed at all (they cannot be ours). */
const MAX_KEY_LENGTH = 256;

export function hashKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** A new random key: 256 bits, base64url, with a recognisable prefix. */
export function generateKey(): string {
  return KEY_PREFIX + randomBytes(32).toString("base64url");
}

/** The API_KEYS entry for `key`. */
export function configEntry(key: string, scope: Scope, name: string): string {
  return `${hashKey(key)}:${scope}:${name}`;
}

export function allows(scope: Scope, needed: Scope): boolean {
  return scope === "admin" || needed === "predict";
}

/** The configured keys. Lookups hash the presented key and compare in constant time. */
export class KeyRing {
  private readonly entries: readonly { digest: Buffer; principal: Principal }[];

  constructor(entries: readonly KeyEntry[]) {
    this.entries = entries.map((e) => ({
      digest: Buffer.from(e.hash, "hex"),
      principal: Object.freeze({ id: e.hash.slice(0, 16), name: e.name, scope: e.scope }),
    }));
  }

  get size(): number {
    return this.entries.length;
  }

  /** The key's principal, or undefined. Compares against every entry, matching or not. */
  verify(key: string): Principal | undefined {
    if (key.length === 0 || key.length > MAX_KEY_LENGTH) return undefined;
    const digest = createHash("sha256").update(key, "utf8").digest();
    let found: Principal | undefined;
    for (const e of this.entries) {
      if (timingSafeEqual(digest, e.digest) && found === undefined) found = e.principal;
    }
    return found;
  }

  /** The principal of a key id (from a session), if that key is still configured. */
  byId(id: string): Principal | undefined {
    return this.entries.find((e) => e.principal.id === id)?.principal;
  }
}
