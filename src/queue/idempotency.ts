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
 * Idempotency-Key records: key → the job it created and the hash of the body that created it,
 * kept for IDEMPOTENCY_TTL_SECONDS. A retry with the same key and body gets the same job.
 */
export class IdempotencyStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
  ) {}

  private key(model: string, idemKey: string): string {
    return modelKey(this.prefix, model, "idem", createHash("sha256").update(idemKey).digest("hex"));
  }

  /** Records `rec` unless the key is known; returns the earlier record when it is. */
  async claim(
    model: string,
    idemKey: string,
    rec: IdempotencyRecord,
  ): Promise<IdempotencyRecord | undefined> {
    const prior = (await this.redis.call(
      "SET",
      this.key(model, idemKey),
      JSON.stringify(rec),
      "EX",
      String(this.ttlSeconds),
      "NX",
      "GET",
    )) as string | null;
    return prior ? (JSON.parse(prior) as IdempotencyRecord) : undefined;
  }

  /** Points a claimed key at other jobs (the ones that answered its request). */
  async repoint(model: string, idemKey: string, rec: IdempotencyRecord): Promise<void> {
    await this.redis.set(this.key(model, idemKey), JSON.stringify(rec), "KEEPTTL", "XX");
  }
}
