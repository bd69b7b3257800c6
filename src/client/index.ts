/**
 * A typed client for Inferline's HTTP API (`import { InferlineClient } from "inferline/client"`).
 * It waits with `Prefer: wait` and falls back to polling (with growing pauses when the server
 * does not hold requests), honours Retry-After on 429, 502, 503 and 504 with capped retries, and
 * sends an Idempotency-Key with every submission, single or batch, so a retried request never
 * creates a second job. Works with any `fetch` (Node 20+, browsers).
 */
import type { JobView, Priority } from "../contracts/jobs.js";

export type { JobStatus, JobView, Priority } from "../contracts/jobs.js";

export interface ClientOptions {
  /** e.g. "http://localhost:3000" */
  readonly baseUrl: string;
  /** Sent as `Authorization: Bearer <key>`. */
  readonly apiKey?: string;
  /** Retries after 429/502/503/504 and network errors before giving up (default 5). */
  readonly maxRetries?: number;
  /** Longest pause between retries, whatever Retry-After says (ms, default 30 000). */
  readonly maxRetryDelayMs?: number;
  /**
   * How long an answer may take beyond the time the request asked the server to hold it
   * (`Prefer: wait`), in ms (default 10 000). A request left unanswered that long is abandoned
   * and retried like a network error; the last one rejects with a `TimeoutError`.
   */
  readonly requestTimeoutMs?: number;
  readonly fetch?: typeof fetch;
}

export interface PredictOptions {
  /**
   * Whole seconds to hold each request open for the result (`Prefer: wait`; default 30, and 0
   * for `submitBatch`). Anything but a whole number of 0 or more is refused with a RangeError.
   */
  readonly wait?: number;
  /**
   * `predict` only: gives up after this long overall, retries, their pauses and each request
   * included (ms, default 300 000); the job goes on. A request still unanswered at that time is
   * abandoned, and no retry is made that would wait past it: the error that called for it
   * rejects instead (or `WaitTimeoutError` once the job is known).
   */
  readonly maxWaitMs?: number;
  readonly priority?: Priority;
  readonly version?: string;
  /** Defaults to a fresh random key, so retries of this call reuse one job. */
  readonly idempotencyKey?: string;
  /** The job ends `expired` if no worker starts it within this many ms. */
  readonly timeoutMs?: number;
  /**
   * Stops the call (its request, retries and pauses): it rejects with the signal's reason. The
   * job goes on; `cancel(jobId)` takes back one that has not started.
   */
  readonly signal?: AbortSignal;
}

export interface Prediction<T = unknown> {
  readonly jobId: string;
  readonly result: T;
  readonly cached: boolean;
  readonly view: JobView;
}

/** An error answer from the API: its HTTP status and stable code. */
export class InferlineError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown = {},
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = "InferlineError";
  }
}

/** The job ended without a result (failed, expired or canceled). */
export class JobFailedError extends InferlineError {
  constructor(readonly view: JobView) {
    super(200, view.error?.code ?? view.status, view.error?.message ?? `job ${view.status}`, view);
    this.name = "JobFailedError";
  }
}

/** The overall wait ran out while the job was still queued or running. */
export class WaitTimeoutError extends Error {
  /** `cause`: the error of the last request, when one failed as the time ran out. */
  constructor(
    readonly view: JobView,
    cause?: unknown,
  ) {
    super(`job ${view.job_id} still ${view.status} after the wait`, cause === undefined ? {} : { cause });
    this.name = "WaitTimeoutError";
  }
}

const TERMINAL = new Set(["completed", "failed", "canceled", "expired"]);

export class InferlineClient {
  private readonly base: string;
  private readonly fetch: typeof fetch;
  private readonly maxRetries: number;
  private readonly maxRetryDelayMs: number;
  private readonly requestTimeoutMs: number;

  constructor(private readonly options: ClientOptions) {
    this.base = options.baseUrl.replace(/\/+$/, "");
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.maxRetries = options.maxRetries ?? 5;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 30_000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  }

  /** Submits one input and resolves with its result, waiting and polling as needed. */
  async predict<T = unknown>(
    model: string,
    input: unknown,
    opts: PredictOptions = {},
  ): Promise<Prediction<T>> {
    const maxWaitMs = opts.maxWaitMs ?? 300_000;
    const deadline = Date.now() + maxWaitMs;
    const longest = checkedWait(opts.wait) ?? 30;
    // The submission is held no longer than the whole call may wait.
    const wait = Math.min(longest, Math.max(0, Math.floor(maxWaitMs / 1000)));
    let view = await this.submitUntil(model, input, { ...opts, wait }, deadline);
    const signal = opts.signal;
    // A server that answers at once (it caps Prefer: wait lower, or ignores it) is polled with
    // growing pauses, not in a tight loop.
    let pause = POLL_MIN_MS;
    while (!TERMINAL.has(view.status)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new WaitTimeoutError(view);
      // Held no longer than the time left: under a second left, a look without a wait.
      const asked = Math.min(longest, Math.floor(left / 1000));
      const t0 = Date.now();
      let polled: Answer;
      try {
        polled = await this.request(
          "GET",
          resultPath(view.job_id),
          undefined,
          asked > 0 ? { prefer: `wait=${asked}` } : {},
          { deadline, signal },
        );
      } catch (err) {
        if (err instanceof OutOfTimeError) throw new WaitTimeoutError(view, err.cause);
        throw err;
      }
      view = polled.body as JobView;
      if (TERMINAL.has(view.status)) break;
      // A server that held the request for the whole wait is asked again at once. It may hold
      // for less than asked (its own cap): Preference-Applied says how long.
      const applied = /^\s*wait=(\d+)/i.exec(polled.headers.get("preference-applied") ?? "");
      const heldFor = applied ? Math.max(1, Math.min(asked, Number(applied[1]))) : asked;
      if (asked > 0 && Date.now() - t0 >= heldFor * 1000 - POLL_MIN_MS) pause = POLL_MIN_MS;
      else {
        await sleep(Math.min(pause, Math.max(0, deadline - Date.now())), signal);
        pause = Math.min(pause * 2, POLL_MAX_MS);
      }
    }
    if (view.status !== "completed") throw new JobFailedError(view);
    return { jobId: view.job_id, result: view.result as T, cached: view.cached === true, view };
  }

  /** Submits one input; resolves with the job as it stands after the wait (202 or 200). */
  submit(model: string, input: unknown, opts: PredictOptions = {}): Promise<JobView> {
    return this.submitUntil(model, input, opts);
  }

  private async submitUntil(
    model: string,
    input: unknown,
    opts: PredictOptions,
    deadline?: number,
  ): Promise<JobView> {
    const path = `/api/ml/${encodeURIComponent(model)}${query(opts)}`;
    const headers = {
      prefer: `wait=${checkedWait(opts.wait) ?? 30}`,
      "idempotency-key": opts.idempotencyKey ?? randomKey(),
    };
    try {
      const call = { deadline, signal: opts.signal };
      return (await this.request("POST", path, input, headers, call)).body as JobView;
    } catch (err) {
      // No job to report yet: the error that would have been retried is the answer.
      throw err instanceof OutOfTimeError ? err.cause : err;
    }
  }

  /**
   * Many inputs in one call; resolves with one view per input, in order. Like a single
   * submission it carries an Idempotency-Key, so a retried batch gets the jobs of the first.
   */
  async submitBatch(
    model: string,
    inputs: readonly unknown[],
    opts: PredictOptions = {},
  ): Promise<JobView[]> {
    const { body } = await this.request(
      "POST",
      `/api/ml/${encodeURIComponent(model)}/batch${query(opts)}`,
      { inputs },
      {
        prefer: `wait=${checkedWait(opts.wait) ?? 0}`,
        "idempotency-key": opts.idempotencyKey ?? randomKey(),
      },
      { signal: opts.signal },
    );
    return (body as { jobs: JobView[] }).jobs;
  }

  /** A job's current view; with `wait`, held until it ends or the seconds pass. */
  async result(jobId: string, opts: { wait?: number; signal?: AbortSignal } = {}): Promise<JobView> {
    const wait = checkedWait(opts.wait);
    const headers: Record<string, string> = wait ? { prefer: `wait=${wait}` } : {};
    const call = { signal: opts.signal };
    return (await this.request("GET", resultPath(jobId), undefined, headers, call)).body as JobView;
  }

  async cancel(jobId: string): Promise<JobView> {
    return (await this.request("DELETE", `/api/results/${encodeURIComponent(jobId)}`)).body as JobView;
  }

  async models(): Promise<unknown[]> {
    return ((await this.request("GET", "/api/models")).body as { models: unknown[] }).models;
  }

  /**
   * One call, retried with backoff after 429, 502-504, network errors and answers that do not
   * come in time: safe for reads, for cancelation (a canceled job cancels again as a no-op) and
   * for submissions, which carry an Idempotency-Key. With a deadline, no answer is awaited past
   * it and no retry made that would start after it: OutOfTimeError carries the error that called
   * for it (for an answer cut off by the deadline, a TimeoutError). An aborted
   * signal ends it at once with the signal's reason, never retried.
   */
  private async request(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    { deadline, signal }: { deadline?: number; signal?: AbortSignal } = {},
  ): Promise<Answer> {
    // The server may hold the request as long as Prefer: wait asks; then it has to answer.
    const holdMs = Number(/wait=(\d+)/.exec(headers.prefer ?? "")?.[1] ?? 0) * 1000;
    const retryOrThrow = async (err: unknown, attempt: number, delayMs: number) => {
      signal?.throwIfAborted();
      if (attempt >= this.maxRetries) throw err;
      const pause = Math.min(this.maxRetryDelayMs, delayMs);
      if (deadline !== undefined && Date.now() + pause >= deadline) throw new OutOfTimeError(err);
      await sleep(pause, signal);
    };
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      let text: string;
      // Each answer is awaited as long as the hold plus requestTimeoutMs, and never past the deadline.
      const left = deadline === undefined ? Infinity : deadline - Date.now();
      const timeoutMs = Math.max(1, Math.min(holdMs + this.requestTimeoutMs, left));
      try {
        res = await this.fetch(this.base + path, {
          method,
          headers: {
            accept: "application/json",
            ...(body === undefined ? {} : { "content-type": "application/json" }),
            ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}),
            ...headers,
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: abortOn(AbortSignal.timeout(timeoutMs), signal),
        });
        text = await res.text();
      } catch (err) {
        await retryOrThrow(err, attempt, 250 * 2 ** attempt);
        continue;
      }
      let parsed: unknown;
      let json = true;
      try {
        parsed = text ? JSON.parse(text) : {};
      } catch {
        // Not the API's answer (a proxy's HTML error page, say): reported by status.
        json = false;
        parsed = { error: { message: `${res.status} ${res.statusText}: ${text.slice(0, 200)}` } };
      }
      if (res.ok) {
        if (!json) throw new InferlineError(res.status, "malformed_response", "the answer was not JSON");
        return { status: res.status, body: parsed, headers: res.headers };
      }
      const e = (parsed as { error?: { code?: string; message?: string; details?: unknown } }).error ?? {};
      const retryAfter = retryAfterSeconds(res.headers.get("retry-after"));
      const error = new InferlineError(
        res.status,
        e.code ?? `http_${res.status}`,
        e.message ?? res.statusText,
        e.details,
        retryAfter,
      );
      if (!RETRIED.has(res.status)) throw error;
      await retryOrThrow(
        error,
        attempt,
        error.retryAfterSeconds !== undefined ? error.retryAfterSeconds * 1000 : 250 * 2 ** attempt,
      );
    }
  }
}

interface Answer {
  readonly status: number;
  readonly body: unknown;
  readonly headers: Headers;
}

/** A retry was due but would have waited past the call's deadline; `cause` is why it was due. */
class OutOfTimeError extends Error {
  constructor(override readonly cause: unknown) {
    super("out of time", { cause });
  }
}

/** Statuses a call is retried after: over a limit, or a gateway or server that is unavailable. */
const RETRIED = new Set([429, 502, 503, 504]);
const POLL_MIN_MS = 100;
const POLL_MAX_MS = 2000;

/** Retry-After in seconds, given as seconds or as an HTTP date (RFC 9110 §10.2.3). */
function retryAfterSeconds(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** `wait` as given, if it is a whole number of seconds (0 or more); a RangeError otherwise. */
function checkedWait(wait: number | undefined): number | undefined {
  if (wait !== undefined && !(Number.isSafeInteger(wait) && wait >= 0))
    throw new RangeError(`wait must be a whole number of seconds, 0 or more; got ${String(wait)}`);
  return wait;
}

function resultPath(jobId: string): string {
  return `/api/results/${encodeURIComponent(jobId)}`;
}

function query(opts: PredictOptions): string {
  const q = new URLSearchParams();
  if (opts.priority) q.set("priority", opts.priority);
  if (opts.version) q.set("version", opts.version);
  if (opts.timeoutMs !== undefined) q.set("timeout_ms", String(opts.timeoutMs));
  const s = q.toString();
  return s ? `?${s}` : "";
}

function randomKey(): string {
  return globalThis.crypto.randomUUID();
}

/** Either signal aborts it. */
function abortOn(timeout: AbortSignal, signal: AbortSignal | undefined): AbortSignal {
  return signal ? AbortSignal.any([timeout, signal]) : timeout;
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const done = () => {
      signal?.removeEventListener("abort", stop);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const stop = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener("abort", stop, { once: true });
  });
}
