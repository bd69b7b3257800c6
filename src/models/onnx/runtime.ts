import path from "node:path";
import type { InferenceSession } from "onnxruntime-node";
import { jobErrors } from "../../errors/catalog.js";
import { makeEncoder, parsePreprocessing, type Encoder } from "../preprocess/index.js";
import type { LoadedModel, ModelDescriptor, ModelRuntime, PredictItem } from "../types.js";
import { onnxSectionSchema, postprocess, type OnnxSection } from "./postprocess.js";
import { SessionHost } from "./session-host.js";

export interface OnnxRuntimeOptions {
  /** Threads one operator may use (0: ONNX Runtime's default, one per core). */
  readonly intraOpThreads: number;
  /** Threads running independent operators in parallel (0: default). */
  readonly interOpThreads: number;
}

/**
 * Models in ONNX format, run by ONNX Runtime on the CPU. One InferenceSession per model
 * version per worker process, each on a thread of its own (onnxruntime-node runs inference on
 * the calling thread, which would stall the worker's event loop for the length of every batch).
 * Each is warmed with one inference before the worker takes jobs, so the first request does not
 * pay for graph optimisation and allocation.
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
      const section = parseSection(descriptor.manifest.onnx);
      const sessionOptions: InferenceSession.SessionOptions = {
        graphOptimizationLevel: "all",
        executionMode: "sequential",
      };
      if (options.intraOpThreads > 0) sessionOptions.intraOpNumThreads = options.intraOpThreads;
      if (options.interOpThreads > 0) sessionOptions.interOpNumThreads = options.interOpThreads;
      let session: SessionHost;
      try {
        session = await SessionHost.start({ file: path.join(descriptor.dir, file), options: sessionOptions });
      } catch (err) {
        throw new Error(`${file}: ONNX Runtime could not load it: ${(err as Error).message}`, { cause: err });
      }
      try {
        const model = new OnnxModel(descriptor, session, encoder, section);
        await model.warmUp();
        return model;
      } catch (err) {
        await session.release().catch(() => {});
        throw err;
      }
    },
  };
}

function parseSection(raw: unknown): OnnxSection {
  const parsed = onnxSectionSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`onnx: ${parsed.error.issues[0]?.message ?? "invalid"}`);
  return parsed.data;
}

class OnnxModel implements LoadedModel {
  private readonly inputName: string;
  private readonly outputName: string;

  constructor(
    readonly descriptor: ModelDescriptor,
    private readonly session: SessionHost,
    private readonly encoder: Encoder,
    private readonly section: OnnxSection,
  ) {
    this.inputName = pick(section.input, session.inputNames, "input");
    this.outputName = pick(section.output, session.outputNames, "output");
    const width = session.inputShapes[this.inputName]?.at(-1);
    if (typeof width === "number" && width !== encoder.width)
      throw new Error(
        `preprocessing makes ${encoder.width} features but input "${this.inputName}" takes ${width}`,
      );
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

  private async infer(data: Float32Array, rows: number) {
    const out = await this.session.run(this.inputName, this.outputName, data, [rows, this.encoder.width]);
    return postprocess(
      out,
      rows,
      this.descriptor.task as "classification" | "regression",
      this.descriptor.labels,
      this.section.activation,
    );
  }

  async close(): Promise<void> {
    await this.session.release();
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
