import type { Redis } from "ioredis";
import { modelKey, queueName } from "../queue/keys.js";
import type { Priority } from "../contracts/jobs.js";

/**
 * Result cache and in-flight coalescing, keyed by model + version + the version's files
 * (resultKey) + SHA-256 of the canonical input. Invalidation never scans: each model has generation counters (`m` for the whole model,
 * `v:<version>` per version) that are part of every key, so bumping one orphans the old entries,
 * which then expire by TTL; the jobs in flight store theirs under the old generations, where no
 * one looks. One input is invalidated by dropping its entry and in-flight slot and fencing the
 * entry against the jobs admitted before (`INVALIDATE_INPUT`). "Everything" bumps each model's
 * counter, once per invalidation id: each model records the ids of the whole-cache invalidations
 * it took (a key per id, kept a day) in the same script, so a retry of one that stopped half way
 * bumps only the models it had not reached (`invalidateOnce`). Lookups never read that field: a cache hit stays one script, one round trip.
 *
 * Admission is one Lua script per request, in the model's hash slot: cache lookup, a check for a
 * live job computing the same input (coalescing), the queue-depth cap, and claiming the in-flight
 * slot for the job about to be added. A request that joins a claim made moments ago may find no
 * job yet: `JobService` waits for it to appear (see `claimWindowMs`). A joined job is marked
 * shared (`joinedKey`), so no one of its requests can cancel it for the others.
 */

/** Appended to an entry's key, the key of its fence (a hash never has a colon). */
const FENCE_SUFFIX = ":invalidated";

const ADMIT = `
local gens = redis.call('HMGET', KEYS[1], 'm', 'v:' .. ARGV[1])
local suffix = ARGV[1] .. ':' .. (gens[1] or '0') .. '.' .. (gens[2] or '0') .. ':' .. ARGV[3]
local cacheKey = ARGV[2] .. 'cache:' .. suffix
local inflightKey = ARGV[2] .. 'inflight:' .. suffix
if ARGV[4] == '1' then
  local hit = redis.call('GET', cacheKey)
  if hit then return {'hit', cacheKey, inflightKey, hit} end
end
if ARGV[5] == '1' then
  local existing = redis.call('GET', inflightKey)
  if existing then
    local jobKey = ARGV[9] .. existing
    local join = false
    if redis.call('EXISTS', ARGV[2] .. 'ended:' .. existing) == 1 then
      -- Canceled: tombstoned (JobRecords) at once, its slot freed a moment later.
      join = false
    elseif redis.call('EXISTS', jobKey) == 1 then
      join = not redis.call('HGET', jobKey, 'finishedOn')
    else
      -- Claimed moments ago: that request's add is on its way.
      join = tonumber(ARGV[7]) - redis.call('PTTL', inflightKey) < tonumber(ARGV[10])
    end
    if join then
      -- The job this very request claimed (a replay of its Idempotency-Key arriving before the
      -- first add landed): it shares the job with no one.
      if existing == ARGV[6] then return {'join', cacheKey, inflightKey, existing, 'self'} end
      -- Marks the job as shared (counting the requests that joined it): one of its requests can
      -- no longer cancel it for the others.
      local joined = ARGV[2] .. 'joined:' .. existing
      redis.call('INCR', joined)
      redis.call('PEXPIRE', joined, ARGV[7])
      return {'join', cacheKey, inflightKey, existing}
    end
  end
end
-- Claims whose add has not landed yet count too (KEYS[6], by claim time; the API removes a
-- claim once its add is answered, the window ends those whose add never came).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - tonumber(ARGV[10]))
local depth = redis.call('LLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3]) + redis.call('ZCARD', KEYS[4])
  + redis.call('LLEN', KEYS[5]) + redis.call('ZCARD', KEYS[6])
if depth >= tonumber(ARGV[8]) then return {'full', cacheKey, inflightKey, tostring(depth)} end
if ARGV[5] == '1' then redis.call('SET', inflightKey, ARGV[6], 'PX', ARGV[7]) end
redis.call('ZADD', KEYS[6], now, ARGV[6])
return {'claim', cacheKey, inflightKey, tostring(depth), tostring(now)}
`;

/**
 * Set while other requests share a job (joined it), to how many: its key, under the job's hash
 * slot. It exists only while the count is above zero.
 */
export function joinedKey(prefix: string, model: string, jobId: string): string {
  return modelKey(prefix, model, "joined", jobId);
}

/**
 * Stores a result and frees the in-flight slot if this job still holds it. The result is not
 * stored when its input was invalidated since the job was admitted (ARGV[4], Redis time in ms;
 * 0 when unknown): the entry's fence (its key and FENCE_SUFFIX) holds when that was.
 */
const STORE = `
if tonumber(ARGV[3]) > 0 then
  local fence = redis.call('GET', KEYS[1] .. '${FENCE_SUFFIX}')
  if not fence or tonumber(fence) < tonumber(ARGV[4]) then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
  end
end
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1
`;

/**
 * Invalidates one input under the model's current generations (KEYS[1]; ARGV: version, key
 * stem, hash, fence TTL in seconds): drops its entry, frees its in-flight slot (the next request
 * runs a job of its own rather than joining one admitted before), and fences the entry, so a job
 * admitted before now does not store its result there. The number of entries dropped.
 */
const INVALIDATE_INPUT = `
local gens = redis.call('HMGET', KEYS[1], 'm', 'v:' .. ARGV[1])
local suffix = ARGV[1] .. ':' .. (gens[1] or '0') .. '.' .. (gens[2] or '0') .. ':' .. ARGV[3]
local cacheKey = ARGV[2] .. 'cache:' .. suffix
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', cacheKey .. '${FENCE_SUFFIX}', tostring(now), 'EX', ARGV[4])
redis.call('DEL', ARGV[2] .. 'inflight:' .. suffix)
return redis.call('DEL', cacheKey)
`;

/**
 * How long the fence of an invalidated input stands (seconds): a job admitted before the
 * invalidation that finishes within this time does not store its result.
 */
export const INPUT_FENCE_TTL_SECONDS = 24 * 3600;

/** Takes back one join (its request was turned away): the marker goes with the last one. */
const UNJOIN = `
if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
return 1
`;

/**
 * Bumps the model's generation (KEYS[1]) unless this invalidation already did: KEYS[2], the
 * model's record of that id, is made here and kept ARGV[1] seconds. 1 if it bumped now.
 */
const INVALIDATE_ONCE = `
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'm', 1)
return 1
`;

/** How long a model remembers a whole-cache invalidation id it took (seconds). */
export const INVALIDATION_ID_TTL_SECONDS = 24 * 3600;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

export type Admission =
  | {
      readonly kind: "hit";
      readonly cacheKey: string;
      readonly inflightKey: string;
      readonly value: CachedResult;
    }
  | {
      readonly kind: "join";
      readonly cacheKey: string;
      readonly inflightKey: string;
      readonly jobId: string;
      /** The job the request itself claimed (an Idempotency-Key replay): not marked shared. */
      readonly own?: boolean;
    }
  | { readonly kind: "full"; readonly cacheKey: string; readonly inflightKey: string; readonly depth: number }
  | {
      readonly kind: "claim";
      readonly cacheKey: string;
      readonly inflightKey: string;
      readonly depth: number;
      /** Counted among the model's claims in Redis until `unclaim` (admitted there). */
      readonly counted: boolean;
      /** When Redis admitted it (ms): a later invalidation of its input fences its result out. */
      readonly admittedAt?: number;
    };

/** What the cache keeps for one input. */
export interface CachedResult {
  readonly output: unknown;
  readonly job_id: string;
  readonly created_at: string;
  readonly inference_ms: number;
  /**
   * Until when the job that computed the result can be read (its retention, from when it
   * finished). Absent from entries of older workers: `created_at` plus the retention then.
   */
  readonly job_retained_until?: string;
  /** When the result was computed (absent from entries of older workers). */
  readonly finished_at?: string;
  /**
   * The computing job's priority, the attempt that computed the result and the attempts it had,
   * so that a hit describes that job as a read of it does (absent from entries of older workers).
   */
  readonly priority?: Priority;
  readonly attempts?: number;
  readonly max_attempts?: number;
}

/** How a job finds its cache entry and in-flight slot (carried in the job data). */
export interface CacheRef {
  readonly key: string;
  readonly inflightKey: string;
  readonly ttlSeconds: number;
  /**
   * When the job was admitted (Redis time, ms): its result is not stored should its input have
   * been invalidated since. Absent from jobs of older APIs: then any such invalidation counts.
   */
  readonly admittedAt?: number;
}

export interface AdmitRequest {
  readonly model: string;
  readonly version: string;
  readonly hash: string;
  readonly useCache: boolean;
  readonly coalesce: boolean;
  readonly jobId: string;
  readonly inflightTtlMs: number;
  /**
   * How long after a claim its job may still be on its way to the queue (twice the add's timeout):
   * a slot younger than this is joined even before its job exists; an older one whose job
   * never appeared (the add failed) is taken over.
   */
  readonly claimWindowMs: number;
  readonly maxDepth: number;
}

type Scripts = Redis & {
  inferlineAdmit(...args: (string | number)[]): Promise<AdmitReply>;
  inferlineStore(...args: (string | number)[]): Promise<number>;
  inferlineRelease(...args: (string | number)[]): Promise<number>;
  inferlineUnjoin(...args: (string | number)[]): Promise<number>;
  inferlineInvalidateOnce(...args: (string | number)[]): Promise<number>;
  inferlineInvalidateInput(...args: (string | number)[]): Promise<number>;
};

type AdmitReply = [string, string, string, string, string?];

function withScripts(redis: Redis): Scripts {
  const r = redis as Scripts;
  if (typeof r.inferlineAdmit !== "function") {
    redis.defineCommand("inferlineAdmit", { numberOfKeys: 6, lua: ADMIT });
    redis.defineCommand("inferlineStore", { numberOfKeys: 2, lua: STORE });
    redis.defineCommand("inferlineRelease", { numberOfKeys: 1, lua: RELEASE });
    redis.defineCommand("inferlineUnjoin", { numberOfKeys: 1, lua: UNJOIN });
    redis.defineCommand("inferlineInvalidateOnce", { numberOfKeys: 2, lua: INVALIDATE_ONCE });
    redis.defineCommand("inferlineInvalidateInput", { numberOfKeys: 1, lua: INVALIDATE_INPUT });
  }
  return r;
}

export class ResultCache {
  private readonly redis: Scripts;
  constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    this.redis = withScripts(redis);
  }

  private genKey(model: string): string {
    return modelKey(this.prefix, model, "cache", "gen");
  }

  private admitKeysAndArgs(req: AdmitRequest): (string | number)[] {
    const q = `${this.prefix}:${queueName(req.model)}:`;
    return [
      this.genKey(req.model),
      `${q}wait`,
      `${q}prioritized`,
      `${q}delayed`,
      `${q}paused`,
      this.claimsKey(req.model),
      req.version,
      q,
      req.hash,
      req.useCache ? "1" : "0",
      req.coalesce ? "1" : "0",
      req.jobId,
      req.inflightTtlMs,
      req.maxDepth,
      q,
      req.claimWindowMs,
    ];
  }

  async admit(req: AdmitRequest): Promise<Admission> {
    return parseAdmission(await this.redis.inferlineAdmit(...this.admitKeysAndArgs(req)));
  }

  /** Admits many inputs in one round trip (one pipeline). */
  async admitMany(reqs: readonly AdmitRequest[]): Promise<Admission[]> {
    const pipeline = this.redis.pipeline() as unknown as {
      inferlineAdmit(...a: (string | number)[]): void;
      exec(): Promise<[Error | null, unknown][] | null>;
    };
    for (const r of reqs) pipeline.inferlineAdmit(...this.admitKeysAndArgs(r));
    const results = (await pipeline.exec()) ?? [];
    return results.map(([err, reply]) => {
      if (err) throw err;
      return parseAdmission(reply as AdmitReply);
    });
  }

  /** Worker side: keep a successful result and free the in-flight slot. */
  async store(ref: CacheRef, jobId: string, value: CachedResult): Promise<void> {
    await this.redis.inferlineStore(
      ref.key,
      ref.inflightKey,
      JSON.stringify(value),
      jobId,
      ref.ttlSeconds,
      ref.admittedAt ?? 0,
    );
  }

  private claimsKey(model: string): string {
    return modelKey(this.prefix, model, "claims");
  }

  /** Ends claims whose jobs' adds have been answered (added, or known never to come). */
  async unclaim(model: string, jobIds: readonly string[]): Promise<void> {
    if (jobIds.length > 0) await this.redis.zrem(this.claimsKey(model), ...jobIds);
  }

  /** Frees the in-flight slot held by `jobId` (failed, canceled or never queued). */
  async release(inflightKey: string, jobId: string): Promise<void> {
    await this.redis.inferlineRelease(inflightKey, jobId);
  }

  /** Takes back a join whose request was turned away: the job is no more shared for it. */
  async unjoin(model: string, jobId: string): Promise<void> {
    await this.redis.inferlineUnjoin(joinedKey(this.prefix, model, jobId));
  }

  /**
   * Drops one input's entry (under the current generations) and keeps the jobs in flight for it
   * from answering later requests: they are not joined, and their results are not stored.
   */
  async invalidateInput(model: string, version: string, hash: string): Promise<number> {
    return this.redis.inferlineInvalidateInput(
      this.genKey(model),
      version,
      `${this.prefix}:${queueName(model)}:`,
      hash,
      INPUT_FENCE_TTL_SECONDS,
    );
  }

  /** Orphans every entry of a model (or of one version of it). */
  async invalidateModel(model: string, version?: string): Promise<void> {
    await this.redis.hincrby(this.genKey(model), version === undefined ? "m" : `v:${version}`, 1);
  }

  /**
   * Orphans every entry of a model as part of whole-cache invalidation `id`, unless that
   * invalidation already did: repeating it is a no-op. True when this call did it.
   */
  async invalidateOnce(model: string, id: string): Promise<boolean> {
    const taken = modelKey(this.prefix, model, "cache", "invalidation", id);
    return (
      (await this.redis.inferlineInvalidateOnce(this.genKey(model), taken, INVALIDATION_ID_TTL_SECONDS)) === 1
    );
  }
}

function parseAdmission([kind, cacheKey, inflightKey, payload, admittedAt]: AdmitReply): Admission {
  switch (kind) {
    case "hit":
      return { kind, cacheKey, inflightKey, value: JSON.parse(payload) as CachedResult };
    case "join":
      return { kind, cacheKey, inflightKey, jobId: payload, own: admittedAt === "self" };
    case "full":
      return { kind, cacheKey, inflightKey, depth: Number(payload) };
    default:
      return {
        kind: "claim",
        cacheKey,
        inflightKey,
        depth: Number(payload),
        counted: true,
        admittedAt: admittedAt === undefined ? undefined : Number(admittedAt),
      };
  }
}
