import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import { modelKey } from "./keys.js";

export interface IdempotencyRecord {
  readonly jobId: string;
  /** A batch's jobs, one per input in order (`jobId` is the first). */
  readonly jobIds?: readonly string[];
  readonly bodyHash: string;
}

/**
 * Where an Idempotency-Key is looked up: one model's requests, and one caller's, so that a
 * caller's key never finds another caller's job (nor tells its id).
 */
export interface IdempotencyScope {
  readonly model: string;
  /** The API key's id; undefined when authentication is off (every request is one caller's). */
  readonly caller: string | undefined;
}

/**
 * Idempotency-Key records: key → the job it created and the hash of the body that created it,
 * kept for IDEMPOTENCY_TTL_SECONDS. A retry with the same key and body gets the same job.
 */
export class IdempotencyStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
  ) {}

  private key(scope: IdempotencyScope, idemKey: string): string {
    // A header value holds no newline: caller and key cannot run together.
    const scoped = scope.caller === undefined ? idemKey : `${scope.caller}\n${idemKey}`;
    return modelKey(this.prefix, scope.model, "idem", createHash("sha256").update(scoped).digest("hex"));
  }

  /** Records `rec` unless the key is known; returns the earlier record when it is. */
  async claim(
    scope: IdempotencyScope,
    idemKey: string,
    rec: IdempotencyRecord,
  ): Promise<IdempotencyRecord | undefined> {
    const prior = (await this.redis.call(
      "SET",
      this.key(scope, idemKey),
      JSON.stringify(rec),
      "EX",
      String(this.ttlSeconds),
      "NX",
      "GET",
    )) as string | null;
    return prior ? (JSON.parse(prior) as IdempotencyRecord) : undefined;
  }

  /** Points a claimed key at other jobs (the ones that answered its request). */
  async repoint(scope: IdempotencyScope, idemKey: string, rec: IdempotencyRecord): Promise<void> {
    await this.redis.set(this.key(scope, idemKey), JSON.stringify(rec), "KEEPTTL", "XX");
  }
}
