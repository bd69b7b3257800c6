import { setTimeout as sleep } from "node:timers/promises";
import { Worker } from "node:worker_threads";
import "./no-telemetry.js";
import type { InferenceSession } from "onnxruntime-node";

export interface SessionInit {
  readonly file: string;
  readonly options: InferenceSession.SessionOptions;
}

export type ThreadRequest =
  | {
      type: "run";
      id: number;
      input: string;
      output: string;
      data: Float32Array;
      dims: number[];
    }
  | { type: "release" };

export type ThreadReply =
  | {
      type: "ready";
      inputNames: readonly string[];
      outputNames: readonly string[];
      inputShapes: Record<string, (number | string)[]>;
    }
  | { type: "failed"; message: string }
  | { type: "result"; id: number; data: Float32Array | Float64Array; dims: number[] }
  | { type: "error"; id: number; message: string };

/** The output tensor of one run: its values and its shape. */
export interface RunOutput {
  readonly data: Float32Array | Float64Array;
  readonly dims: readonly number[];
}

/** A run that took longer than its timeout; the session's thread is being replaced. */
export class SessionTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`inference took longer than ${timeoutMs} ms`);
    this.name = "SessionTimeoutError";
  }
}

/** What a session host reports about its thread (all optional). */
export interface SessionHooks {
  /** The thread exited while nobody asked it to (a crash in the thread): the host is dead. */
  readonly onExit?: (code: number) => void;
  /**
   * A thread let go (after a timeout, or at release) is still running `STUCK_AFTER_MS` later: it
   * is inside ONNX Runtime's native run, which nothing in JavaScript can interrupt. `stuck`
   * counts such threads in this process.
   */
  readonly onStuck?: (stuck: number) => void;
  /** A thread counted as stuck exited after all (its run returned); `stuck` as above. */
  readonly onUnstuck?: (stuck: number) => void;
}

/** How long a thread let go may take to exit before it counts as stuck (ms). */
export const STUCK_AFTER_MS = 2000;

/** Threads of this process let go that have not exited yet, and those of them counted stuck. */
let lingering = 0;
let stuck = 0;

/**
 * Session threads of this process that were let go but still run. Such a thread is never
 * terminated: terminate() cannot stop ONNX Runtime's native run, and once the run returns into
 * a terminated thread, onnxruntime-node aborts the whole process. For the same reason the
 * process must not exit normally while one runs (Node terminates and waits for its threads on
 * exit): whoever ends the process kills it instead.
 */
export function lingeringSessionThreads(): number {
  return lingering;
}

/**
 * One ONNX Runtime session running on a thread of its own. A host whose thread exited, or was
 * abandoned after a run timed out, is dead for good (`alive` false, every run rejects): the
 * owner starts a new one.
 */
export class SessionHost {
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (d: RunOutput) => void; reject: (e: Error) => void }
  >();
  /** Why runs are refused: the thread exited, was abandoned, or the session was released. */
  private ended: Error | undefined;
  private readonly gone: Promise<void>;
  private threadExited = false;
  /** The thread was asked to release its session and exit. */
  private lettingGo = false;

  private constructor(
    private readonly worker: Worker,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
    readonly inputShapes: Readonly<Record<string, readonly (number | string)[]>>,
    private readonly hooks: SessionHooks,
  ) {
    worker.on("message", (msg: ThreadReply) => {
      if (msg.type !== "result" && msg.type !== "error") return;
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.type === "result") p?.resolve({ data: msg.data, dims: msg.dims });
      else p?.reject(new Error(msg.message));
    });
    this.gone = new Promise((resolve) =>
      worker.once("exit", (code) => {
        this.threadExited = true;
        resolve();
        const unexpected = this.ended === undefined;
        this.ended ??= new Error(`ONNX Runtime thread exited (${code})`);
        this.failPending(this.ended);
        if (unexpected) this.hooks.onExit?.(code);
      }),
    );
  }

  static async start(init: SessionInit, hooks: SessionHooks = {}): Promise<SessionHost> {
    // Under tsx (tests, development) this module is .ts and so is its sibling. A thread does not
    // inherit tsx's loader (Node 20), so there it registers the loader before importing the file.
    const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
    const entry = new URL(`./session-thread${ext}`, import.meta.url);
    const worker =
      ext === ".ts"
        ? new Worker(
            `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))})` +
              `.then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); })`,
            { eval: true, workerData: init },
          )
        : new Worker(entry, { workerData: init });
    const ready = await new Promise<Extract<ThreadReply, { type: "ready" }>>((resolve, reject) => {
      worker.once("message", (msg: ThreadReply) => {
        if (msg.type === "ready") resolve(msg);
        else if (msg.type === "failed") reject(new Error(msg.message));
      });
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`ONNX Runtime thread exited (${code}) while loading`)));
    }).catch(async (err: unknown) => {
      await worker.terminate();
      throw err;
    });
    return new SessionHost(worker, ready.inputNames, ready.outputNames, ready.inputShapes, hooks);
  }

  /** False once the thread exited, was abandoned or released: every run rejects. */
  get alive(): boolean {
    return this.ended === undefined;
  }

  /**
   * Runs one batch; `data` is handed over to the thread (the caller must not reuse it). With
   * `timeoutMs` > 0, a run still going after that long rejects with SessionTimeoutError, and so
   * does every other run in flight: the thread is let go and the host is dead.
   */
  run(input: string, output: string, data: Float32Array, dims: number[], timeoutMs = 0): Promise<RunOutput> {
    if (this.ended) return Promise.reject(this.ended);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs > 0
          ? setTimeout(() => this.abandon(new SessionTimeoutError(timeoutMs)), timeoutMs)
          : undefined;
      this.pending.set(id, {
        resolve: (d) => {
          clearTimeout(timer);
          resolve(d);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.worker.postMessage({ type: "run", id, input, output, data, dims } satisfies ThreadRequest, [
        data.buffer as ArrayBuffer,
      ]);
    });
  }

  private failPending(reason: Error): void {
    for (const p of this.pending.values()) p.reject(reason);
    this.pending.clear();
  }

  /**
   * Gives up on the thread (a run hangs): refuses further runs, fails every run in flight (they
   * wait behind the hung one) and lets the thread go.
   */
  private abandon(reason: Error): void {
    this.ended ??= reason;
    this.failPending(reason);
    this.letGo();
  }

  /**
   * Asks the thread to release its session and exit. The message waits behind a run in progress,
   * so a thread whose run hangs exits when (if ever) the run returns: until it exits it lingers,
   * and past STUCK_AFTER_MS it counts as stuck.
   */
  private letGo(): void {
    if (this.lettingGo || this.threadExited) return;
    this.lettingGo = true;
    this.worker.postMessage({ type: "release" } satisfies ThreadRequest);
    lingering++;
    let counted = false;
    const timer = setTimeout(() => {
      counted = true;
      stuck++;
      this.hooks.onStuck?.(stuck);
    }, STUCK_AFTER_MS);
    timer.unref();
    void this.gone.then(() => {
      clearTimeout(timer);
      lingering--;
      if (!counted) return;
      stuck--;
      this.hooks.onUnstuck?.(stuck);
    });
  }

  /**
   * Frees the session: refuses further runs, lets a run in flight finish (or time out), then the
   * thread releases the session and exits. Waits for that at most STUCK_AFTER_MS (a thread inside
   * a hung run exits only when the run returns).
   */
  async release(): Promise<void> {
    this.ended ??= new Error("ONNX Runtime session released");
    this.letGo();
    await Promise.race([this.gone, sleep(STUCK_AFTER_MS)]);
  }
}
