import path from "node:path";
import type { InferenceSession } from "onnxruntime-node";
import { jobErrors } from "../../errors/catalog.js";
import { makeEncoder, parsePreprocessing, type Encoder } from "../preprocess/index.js";
import type { LoadedModel, ModelDescriptor, ModelRuntime, PredictItem } from "../types.js";
import { parseOnnxSection, postprocess, type OnnxSection } from "./postprocess.js";
import { SessionHost, SessionTimeoutError, type SessionHooks, type SessionInit } from "./session-host.js";

/**
 * What happens to a model's session threads, for logs and metrics:
 * - `timeout`: a batch of `rows` ran longer than `timeoutMs`; its jobs' attempt fails and the
 *   thread is abandoned;
 * - `exited`: the thread exited by itself (`code`); the runs in flight failed;
 * - `restarted`: a fresh session replaced the dead one (`reason`: why the old one died), loaded
 *   and warmed in `ms`;
 * - `restart_failed`: the fresh session could not load (the next batch tries again);
 * - `stuck`: an abandoned thread is still inside ONNX Runtime (`stuck`: such threads in this
 *   process; each keeps a core busy until its run returns, if it ever does);
 * - `unstuck`: such a thread exited after all.
 */
export type SessionEvent = { readonly model: string; readonly version: string } & (
  | { readonly type: "timeout"; readonly timeoutMs: number; readonly rows: number }
  | { readonly type: "exited"; readonly code: number }
  | { readonly type: "restarted"; readonly reason: "timeout" | "exited"; readonly ms: number }
  | { readonly type: "restart_failed"; readonly error: string }
  | { readonly type: "stuck" | "unstuck"; readonly stuck: number }
);

export interface OnnxRuntimeOptions {
  /** Threads one operator may use (0: ONNX Runtime's default, one per core). */
  readonly intraOpThreads: number;
  /** Threads running independent operators in parallel (0: default). */
  readonly interOpThreads: number;
  /** Longest one inference batch may take, unless the manifest's `onnx` section says (ms). */
  readonly inferenceTimeoutMs: number;
  /** Told about timeouts and session restarts (default: nobody). */
  readonly onSessionEvent?: (event: SessionEvent) => void;
}

/**
 * Models in ONNX format, run by ONNX Runtime on the CPU. One InferenceSession per model
 * version per worker process, each on a thread of its own (onnxruntime-node runs inference on
 * the calling thread, which would stall the worker's event loop for the length of every batch).
 * Each is warmed with one inference before the worker takes jobs, so the first request does not
 * pay for graph optimisation and allocation.
 *
 * A batch running longer than the timeout fails its jobs' attempt with `inference_timeout`
 * (retried with backoff) and the thread is abandoned; a thread that exits fails the batch in
 * flight. Either way the next batch starts a fresh session (one, however many batches ask).
 */
export function onnxRuntime(options: OnnxRuntimeOptions): ModelRuntime {
  return {
    kind: "onnx",
    async load(descriptor) {
      const file = descriptor.manifest.file;
      if (typeof file !== "string") throw new Error("manifest has no model file");
      if (descriptor.task !== "classification" && descriptor.task !== "regression")
        throw new Error(`an onnx model's task must be classification or regression, not ${descriptor.task}`);
      const encoder = makeEncoder(parsePreprocessing(descriptor.manifest.preprocessing));
      const section = parseOnnxSection(descriptor.manifest.onnx);
      const sessionOptions: InferenceSession.SessionOptions = {
        graphOptimizationLevel: "all",
        executionMode: "sequential",
      };
      if (options.intraOpThreads > 0) sessionOptions.intraOpNumThreads = options.intraOpThreads;
      if (options.interOpThreads > 0) sessionOptions.interOpNumThreads = options.interOpThreads;
      const init: SessionInit = { file: path.join(descriptor.dir, file), options: sessionOptions };
      const model = new OnnxModel(descriptor, init, encoder, section, {
        timeoutMs: section.inferenceTimeoutMs ?? options.inferenceTimeoutMs,
        onEvent: options.onSessionEvent ?? (() => {}),
      });
      await model.start(file);
      try {
        await model.warmUp();
        return model;
      } catch (err) {
        await model.close().catch(() => {});
        throw err;
      }
    },
  };
}

class OnnxModel implements LoadedModel {
  private session: SessionHost | undefined;
  /** The fresh session being started after the last one died (shared by every batch waiting). */
  private replacing: Promise<SessionHost> | undefined;
  /** Why the current session died: a timeout, or its thread exited. */
  private died: "timeout" | "exited" = "exited";
  private closed = false;
  private inputName = "";
  /** 1 when the model's input has a fixed batch dimension of 1 (unset: dynamic). */
  maxBatchRows: number | undefined;
  private outputName = "";

  constructor(
    readonly descriptor: ModelDescriptor,
    private readonly init: SessionInit,
    private readonly encoder: Encoder,
    private readonly section: OnnxSection,
    private readonly limits: { readonly timeoutMs: number; readonly onEvent: (e: SessionEvent) => void },
  ) {}

  /** Loads the session (`file` as the manifest names it) and checks its tensors against the manifest. */
  async start(file: string): Promise<void> {
    let session: SessionHost;
    try {
      session = await SessionHost.start(this.init, this.hooks());
    } catch (err) {
      throw new Error(`${file}: ONNX Runtime could not load it: ${(err as Error).message}`, { cause: err });
    }
    try {
      this.inputName = pick(this.section.input, session.inputNames, "input");
      this.outputName = pick(this.section.output, session.outputNames, "output");
      const shape = session.inputShapes[this.inputName];
      // Exported without a dynamic batch dimension: every batch must have exactly that many rows.
      const batch = shape?.[0];
      if (typeof batch === "number" && batch > 0 && (shape?.length ?? 0) > 1) {
        if (batch !== 1)
          throw new Error(
            `input "${this.inputName}" takes a fixed batch of ${batch} rows: export the model with a dynamic batch dimension`,
          );
        this.maxBatchRows = 1;
      }
      const width = shape?.at(-1);
      if (typeof width === "number" && width !== this.encoder.width)
        throw new Error(
          `preprocessing makes ${this.encoder.width} features but input "${this.inputName}" takes ${width}`,
        );
    } catch (err) {
      await session.release();
      throw err;
    }
    this.session = session;
  }

  private hooks(): SessionHooks {
    const { name: model, version } = this.descriptor;
    return {
      onExit: (code) => {
        this.died = "exited";
        this.limits.onEvent({ type: "exited", model, version, code });
      },
      onStuck: (stuck) => this.limits.onEvent({ type: "stuck", model, version, stuck }),
      onUnstuck: (stuck) => this.limits.onEvent({ type: "unstuck", model, version, stuck }),
    };
  }

  /** One inference on a neutral row: fails the load (not a request) if the graph cannot run. */
  async warmUp(): Promise<void> {
    await this.infer(new Float32Array(this.encoder.width), 1);
  }

  async predictBatch(items: readonly PredictItem[]): Promise<unknown[]> {
    const width = this.encoder.width;
    const data = new Float32Array(items.length * width);
    items.forEach((item, i) => {
      try {
        this.encoder.encode(item.input, data.subarray(i * width, (i + 1) * width));
      } catch (err) {
        // The input cannot become a feature row: no retry will change that.
        throw jobErrors.invalidInput((err as Error).message);
      }
    });
    const outputs = await this.infer(data, items.length);
    // NaN and Infinity have no JSON form: they would be sent as null under a confident label.
    // (Not checked on the warm-up's all-zero row, which some graphs cannot take.)
    outputs.forEach((o, r) => {
      const values = "value" in o ? [o.value] : Object.values(o.probabilities);
      if (!values.every(Number.isFinite))
        throw new Error(`the model's output for row ${r} is not a finite number`);
    });
    return outputs;
  }

  /** The session to run on: the current one, or a fresh one if it died. */
  private live(): Promise<SessionHost> {
    if (this.closed) return Promise.reject(this.unloaded());
    if (this.session?.alive) return Promise.resolve(this.session);
    this.replacing ??= this.replace().finally(() => (this.replacing = undefined));
    return this.replacing;
  }

  private async replace(): Promise<SessionHost> {
    const { name: model, version } = this.descriptor;
    const reason = this.died;
    const t0 = performance.now();
    let next: SessionHost;
    try {
      next = await SessionHost.start(this.init, this.hooks());
      // Warmed like the first, so the batch waiting for it does not pay for graph optimisation.
      await this.run(next, new Float32Array(this.encoder.width), 1);
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      this.limits.onEvent({ type: "restart_failed", model, version, error });
      throw jobErrors.modelUnavailable(
        `${model}@${version}: the ONNX Runtime session could not restart: ${error}`,
      );
    }
    if (this.closed) {
      await next.release();
      throw this.unloaded();
    }
    this.session = next;
    this.limits.onEvent({
      type: "restarted",
      model,
      version,
      reason,
      ms: Math.round(performance.now() - t0),
    });
    return next;
  }

  private async infer(data: Float32Array, rows: number) {
    const { data: out, dims } = await this.run(await this.live(), data, rows);
    // Row r of the output must answer row r of the input. An output laid out otherwise (classes
    // first, or a fixed first dimension) would hand each job some other numbers as its answer.
    if (dims[0] !== rows)
      throw new Error(
        `output "${this.outputName}" has shape [${dims.join(", ")}] for ${rows} ${rows === 1 ? "row" : "rows"}: its first dimension must be the batch`,
      );
    return postprocess(
      out,
      rows,
      this.descriptor.task as "classification" | "regression",
      this.descriptor.labels,
      this.section.activation,
    );
  }

  private async run(session: SessionHost, data: Float32Array, rows: number) {
    const { timeoutMs } = this.limits;
    try {
      return await session.run(this.inputName, this.outputName, data, [rows, this.encoder.width], timeoutMs);
    } catch (err) {
      // Released under the run by a reload that dropped this version.
      if (this.closed && !(err instanceof SessionTimeoutError)) throw this.unloaded();
      if (!(err instanceof SessionTimeoutError)) throw err;
      this.died = "timeout";
      const { name: model, version } = this.descriptor;
      this.limits.onEvent({ type: "timeout", model, version, timeoutMs, rows });
      throw jobErrors.inferenceTimeout(
        `the inference batch (${rows} ${rows === 1 ? "input" : "inputs"}) ran longer than ${timeoutMs} ms; its ONNX Runtime session is being replaced`,
      );
    }
  }

  /**
   * What a job still waiting for this version gets once a reload unloaded it: retried, like a job
   * that reaches a worker which no longer serves its version, so another worker may take it.
   */
  private unloaded() {
    return jobErrors.versionNotServed(this.descriptor.name, this.descriptor.version);
  }

  async close(): Promise<void> {
    this.closed = true;
    const replacing = this.replacing;
    await this.session?.release();
    await replacing?.then(
      (s) => s.release(),
      () => {},
    );
  }
}

function pick(wanted: string | undefined, names: readonly string[], what: string): string {
  if (wanted === undefined) {
    const first = names[0];
    if (first === undefined) throw new Error(`model has no ${what}`);
    return first;
  }
  if (!names.includes(wanted))
    throw new Error(`model has no ${what} "${wanted}" (it has ${names.join(", ")})`);
  return wanted;
}
