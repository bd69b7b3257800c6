import { Worker } from "node:worker_threads";
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
  | { type: "result"; id: number; data: Float32Array | Float64Array }
  | { type: "error"; id: number; message: string };

/** One ONNX Runtime session running on a thread of its own. */
export class SessionHost {
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (d: Float32Array | Float64Array) => void; reject: (e: Error) => void }
  >();
  private exited: Error | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
    readonly inputShapes: Readonly<Record<string, readonly (number | string)[]>>,
  ) {
    worker.on("message", (msg: ThreadReply) => {
      if (msg.type !== "result" && msg.type !== "error") return;
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.type === "result") p?.resolve(msg.data);
      else p?.reject(new Error(msg.message));
    });
    worker.on("exit", (code) => {
      this.exited = new Error(`ONNX Runtime thread exited (${code})`);
      for (const p of this.pending.values()) p.reject(this.exited);
      this.pending.clear();
    });
  }

  static async start(init: SessionInit): Promise<SessionHost> {
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
    return new SessionHost(worker, ready.inputNames, ready.outputNames, ready.inputShapes);
  }

  /** Runs one batch; `data` is handed over to the thread (the caller must not reuse it). */
  run(
    input: string,
    output: string,
    data: Float32Array,
    dims: number[],
  ): Promise<Float32Array | Float64Array> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: "run", id, input, output, data, dims } satisfies ThreadRequest, [
        data.buffer as ArrayBuffer,
      ]);
    });
  }

  async release(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise((r) => this.worker.once("exit", r));
    this.worker.postMessage({ type: "release" } satisfies ThreadRequest);
    const timer = setTimeout(() => void this.worker.terminate(), 2000);
    await gone;
    clearTimeout(timer);
  }
}
