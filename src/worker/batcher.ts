import { InferenceTimeoutError } from "../errors/catalog.js";
import type { LoadedModel, PredictItem } from "../models/types.js";

export interface BatchOutcome {
  readonly output: unknown;
  readonly inferenceMs: number;
  readonly batchSize: number;
}

interface Pending {
  readonly item: PredictItem;
  /** performance.now() when it was submitted. */
  readonly at: number;
  resolve(v: BatchOutcome): void;
  reject(e: unknown): void;
}

/**
 * Dynamic batching for one model version. Jobs the worker holds concurrently queue here; when
 * the model is idle the batcher takes up to `maxBatchSize` of them at once (after waiting up to
 * `maxDelayMs` for more, 0 = take what is there) and runs one inference. A batch that throws is
 * re-run item by item, so a poison input fails alone; except one that timed out, whose items all
 * fail their attempt at once (re-running them one by one could cost a timeout each).
 */
export class Batcher {
  private readonly queue: Pending[] = [];
  private running = false;
  constructor(
    private readonly model: LoadedModel,
    private readonly onBatch: (size: number, ms: number) => void = () => {},
  ) {}

  /** Rows per inference: the manifest's maxBatchSize, or fewer if the model takes no more. */
  private get maxRows(): number {
    return Math.min(this.model.descriptor.batching.maxBatchSize, this.model.maxBatchRows ?? Infinity);
  }

  submit(item: PredictItem): Promise<BatchOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, at: performance.now(), resolve, reject });
      this.schedule();
    });
  }

  private timer:
    { handle: NodeJS.Timeout; delayed: true } | { handle: NodeJS.Immediate; delayed: false } | undefined;

  private schedule(): void {
    if (this.running) return;
    const { maxDelayMs } = this.model.descriptor.batching;
    const full = this.queue.length >= this.maxRows;
    if (this.timer) {
      // A batch that filled up while waiting for company has nothing more to wait for.
      if (!this.timer.delayed || !full) return;
      clearTimeout(this.timer.handle);
    }
    const fire = () => {
      this.timer = undefined;
      void this.drain();
    };
    // With a delay, wait for more jobs until the oldest has waited maxDelayMs (jobs left over from
    // the previous batch have waited already); without, or once the batch is full, let the jobs
    // fetched in this turn of the event loop join the batch and go.
    const wait = maxDelayMs > 0 && !full ? this.queue[0]!.at + maxDelayMs - performance.now() : 0;
    this.timer =
      wait > 0
        ? { handle: setTimeout(fire, wait), delayed: true }
        : { handle: setImmediate(fire), delayed: false };
  }

  private async drain(): Promise<void> {
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    try {
      const batch = this.queue.splice(0, this.maxRows);
      await this.run(batch);
    } finally {
      this.running = false;
      if (this.queue.length > 0) this.schedule();
    }
  }

  private async run(batch: Pending[]): Promise<void> {
    const t0 = performance.now();
    let outputs: unknown[];
    try {
      outputs = await this.model.predictBatch(batch.map((p) => p.item));
      if (outputs.length !== batch.length) {
        throw new Error(`model returned ${outputs.length} outputs for ${batch.length} inputs`);
      }
    } catch (err) {
      if (batch.length === 1 || err instanceof InferenceTimeoutError) {
        for (const p of batch) p.reject(err);
        return;
      }
      for (const p of batch) await this.run([p]);
      return;
    }
    const ms = performance.now() - t0;
    this.onBatch(batch.length, ms);
    batch.forEach((p, i) => p.resolve({ output: outputs[i], inferenceMs: ms, batchSize: batch.length }));
  }

  /** Nothing running, waiting or about to run. */
  get idle(): boolean {
    return !this.running && this.queue.length === 0 && this.timer === undefined;
  }

  /** Jobs waiting for the model right now. */
  get backlog(): number {
    return this.queue.length;
  }
}
