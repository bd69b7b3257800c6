/**
 * The model contract: type-only, imports nothing of ours. A runtime (built-in code, ONNX, ...)
 * turns a manifest into a LoadedModel; workers feed it batches.
 */

export type JsonSchema = Record<string, unknown>;

export type ModelTask = "classification" | "regression" | "sentiment" | "diagnostic";

export interface ModelDescriptor {
  readonly name: string;
  readonly version: string;
  readonly description: string;
  readonly kind: "builtin" | "onnx";
  /** JSON Schema of one input: what the API validates before queueing. */
  readonly inputSchema: JsonSchema;
  /**
   * What the model's preprocessing needs of an input beyond `inputSchema` (field types, a
   * vector's length, known categories, numbers a 32-bit float holds). Checked with it.
   */
  readonly featureSchema?: JsonSchema;
  readonly task: ModelTask;
  readonly labels?: readonly string[];
  readonly batching: { readonly maxBatchSize: number; readonly maxDelayMs: number };
  readonly cacheTtlSeconds: number;
  /** Queue depth beyond which the API answers 429 (overrides QUEUE_MAX_DEPTH). */
  readonly maxQueueDepth?: number;
  /** Held-out metrics measured when the model was trained, if it was. */
  readonly training?: Readonly<Record<string, unknown>>;
  /**
   * The version's files, in short: its manifest's bytes and its model file's size. A version
   * changed in place (retrained over itself, which rewrites its manifest) gets another, so
   * results cached for what it held before are not served for what it holds now. Empty for a
   * descriptor made of a manifest not read from disk.
   */
  readonly fingerprint: string;
  /** Folder holding the manifest (and the model file). */
  readonly dir: string;
  /** The manifest as written, for runtimes that need their own sections. */
  readonly manifest: Readonly<Record<string, unknown>>;
}

/** Per-item facts a model may use (the diagnostics model injects faults by attempt). */
export interface PredictItem {
  readonly input: unknown;
  /** 1 on the first attempt. */
  readonly attempt: number;
}

export interface LoadedModel {
  readonly descriptor: ModelDescriptor;
  /**
   * Most inputs one predictBatch call can take, when the model itself sets a limit (an ONNX
   * file exported with a fixed batch of 1); the manifest's maxBatchSize applies as well.
   */
  readonly maxBatchRows?: number;
  /**
   * One output per item, in order. Throwing fails the whole batch; the worker then retries the
   * items one by one so a bad input cannot fail its neighbours.
   */
  predictBatch(items: readonly PredictItem[]): Promise<unknown[]>;
  close(): Promise<void>;
}

export interface ModelRuntime {
  readonly kind: ModelDescriptor["kind"];
  load(descriptor: ModelDescriptor): Promise<LoadedModel>;
}
