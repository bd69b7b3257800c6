import { rng } from "./rng.js";

/** A feature row kept sparse: most hashed text features are zero. */
export interface SparseRow {
  readonly idx: Uint32Array;
  readonly val: Float32Array;
}

export function toSparse(dense: Float32Array): SparseRow {
  let n = 0;
  for (const v of dense) if (v !== 0) n++;
  const idx = new Uint32Array(n);
  const val = new Float32Array(n);
  let j = 0;
  for (let i = 0; i < dense.length; i++) {
    if (dense[i] !== 0) {
      idx[j] = i;
      val[j++] = dense[i]!;
    }
  }
  return { idx, val };
}

/** One dense layer: `weights` is [inputs × outputs], row-major (ONNX MatMul layout). */
export interface Layer {
  readonly inputs: number;
  readonly outputs: number;
  readonly weights: Float32Array;
  readonly bias: Float32Array;
}

export type Loss = "softmax-cross-entropy" | "mse";

/**
 * A multilayer perceptron with ReLU between layers; no hidden layer is (multinomial) logistic
 * or linear regression. Plain Float32Array math: the forward pass here is the reference the
 * served ONNX graph is checked against.
 */
export class Mlp {
  constructor(
    readonly layers: Layer[],
    readonly loss: Loss,
  ) {}

  static init(sizes: readonly number[], loss: Loss, seed: number): Mlp {
    const random = rng(seed);
    const layers: Layer[] = [];
    for (let l = 0; l + 1 < sizes.length; l++) {
      const inputs = sizes[l]!;
      const outputs = sizes[l + 1]!;
      // He-uniform for ReLU layers keeps activations at a stable scale.
      const limit = Math.sqrt(6 / inputs);
      const weights = new Float32Array(inputs * outputs);
      for (let i = 0; i < weights.length; i++) weights[i] = (random() * 2 - 1) * limit;
      layers.push({ inputs, outputs, weights, bias: new Float32Array(outputs) });
    }
    return new Mlp(layers, loss);
  }

  /** Activations of every layer for one row (last = output after softmax, if classifying). */
  forward(x: SparseRow): Float32Array[] {
    const acts: Float32Array[] = [];
    let prev: Float32Array | undefined;
    this.layers.forEach((layer, l) => {
      const out = new Float64Array(layer.bias);
      const { weights: w, outputs: m } = layer;
      if (prev === undefined) {
        for (let k = 0; k < x.idx.length; k++) {
          const v = x.val[k]!;
          const base = x.idx[k]! * m;
          for (let j = 0; j < m; j++) out[j]! += v * w[base + j]!;
        }
      } else {
        for (let i = 0; i < layer.inputs; i++) {
          const v = prev[i]!;
          if (v === 0) continue;
          const base = i * m;
          for (let j = 0; j < m; j++) out[j]! += v * w[base + j]!;
        }
      }
      const last = l === this.layers.length - 1;
      const a = new Float32Array(m);
      if (!last) for (let j = 0; j < m; j++) a[j] = out[j]! > 0 ? out[j]! : 0;
      else if (this.loss === "softmax-cross-entropy") {
        let max = -Infinity;
        for (let j = 0; j < m; j++) max = Math.max(max, out[j]!);
        let sum = 0;
        for (let j = 0; j < m; j++) sum += out[j] = Math.exp(out[j]! - max);
        for (let j = 0; j < m; j++) a[j] = out[j]! / sum;
      } else a.set(out);
      acts.push(a);
      prev = a;
    });
    return acts;
  }

  predict(x: SparseRow): Float32Array {
    return this.forward(x).at(-1)!;
  }

  parameterCount(): number {
    return this.layers.reduce((n, l) => n + l.weights.length + l.bias.length, 0);
  }
}

export interface TrainOptions {
  readonly epochs: number;
  readonly batchSize: number;
  readonly learningRate: number;
  /** L2 penalty on weights (not biases). */
  readonly l2: number;
  readonly seed: number;
  /** Called after each minibatch with the share of training done (0..1) and the running loss. */
  readonly onProgress?: (done: number, loss: number) => void;
}

/**
 * Minibatch Adam on the given rows. `targets`: class index (classification) or the value
 * (regression). Deterministic: the row order of each epoch comes from `seed`.
 */
export function train(
  model: Mlp,
  rows: readonly SparseRow[],
  targets: readonly number[],
  o: TrainOptions,
): void {
  const random = rng(o.seed);
  const L = model.layers;
  const grads = L.map((l) => ({ w: new Float32Array(l.weights.length), b: new Float32Array(l.bias.length) }));
  const m1 = L.map((l) => ({ w: new Float32Array(l.weights.length), b: new Float32Array(l.bias.length) }));
  const m2 = L.map((l) => ({ w: new Float32Array(l.weights.length), b: new Float32Array(l.bias.length) }));
  const beta1 = 0.9;
  const beta2 = 0.999;
  let step = 0;
  const steps = o.epochs * Math.ceil(rows.length / o.batchSize);
  let runningLoss = 0;
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    const order = Array.from({ length: rows.length }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (let start = 0; start < order.length; start += o.batchSize) {
      const batch = order.slice(start, start + o.batchSize);
      for (const g of grads) {
        g.w.fill(0);
        g.b.fill(0);
      }
      let batchLoss = 0;
      for (const r of batch) batchLoss += backprop(model, rows[r]!, targets[r]!, grads);
      step++;
      const lr = o.learningRate;
      const c1 = 1 - beta1 ** step;
      const c2 = 1 - beta2 ** step;
      const n = batch.length;
      L.forEach((layer, l) => {
        const g = grads[l]!;
        const a = m1[l]!;
        const v = m2[l]!;
        const update = (
          p: Float32Array,
          gp: Float32Array,
          ap: Float32Array,
          vp: Float32Array,
          decay: number,
        ) => {
          for (let i = 0; i < p.length; i++) {
            const gi = gp[i]! / n + decay * p[i]!;
            ap[i] = beta1 * ap[i]! + (1 - beta1) * gi;
            vp[i] = beta2 * vp[i]! + (1 - beta2) * gi * gi;
            p[i]! -= (lr * (ap[i]! / c1)) / (Math.sqrt(vp[i]! / c2) + 1e-8);
          }
        };
        update(layer.weights, g.w, a.w, v.w, o.l2);
        update(layer.bias, g.b, a.b, v.b, 0);
      });
      runningLoss = step === 1 ? batchLoss / n : 0.95 * runningLoss + 0.05 * (batchLoss / n);
      o.onProgress?.(step / steps, runningLoss);
    }
  }
}

/** Adds one row's gradients into `grads`; returns its loss. */
function backprop(
  model: Mlp,
  x: SparseRow,
  target: number,
  grads: { w: Float32Array; b: Float32Array }[],
): number {
  const acts = model.forward(x);
  const L = model.layers;
  const out = acts.at(-1)!;
  let delta = new Float32Array(out.length);
  let loss: number;
  if (model.loss === "softmax-cross-entropy") {
    delta.set(out);
    delta[target]! -= 1;
    loss = -Math.log(Math.max(out[target]!, 1e-12));
  } else {
    const d = out[0]! - target;
    delta[0] = d;
    loss = 0.5 * d * d;
  }
  for (let l = L.length - 1; l >= 0; l--) {
    const layer = L[l]!;
    const g = grads[l]!;
    const m = layer.outputs;
    for (let j = 0; j < m; j++) g.b[j]! += delta[j]!;
    const input = l > 0 ? acts[l - 1]! : undefined;
    if (input === undefined) {
      for (let k = 0; k < x.idx.length; k++) {
        const v = x.val[k]!;
        const base = x.idx[k]! * m;
        for (let j = 0; j < m; j++) g.w[base + j]! += v * delta[j]!;
      }
    } else {
      const next = new Float32Array(layer.inputs);
      for (let i = 0; i < layer.inputs; i++) {
        const v = input[i]!;
        const base = i * m;
        let s = 0;
        for (let j = 0; j < m; j++) {
          if (v !== 0) g.w[base + j]! += v * delta[j]!;
          s += layer.weights[base + j]! * delta[j]!;
        }
        // ReLU derivative of the layer below.
        next[i] = v > 0 ? s : 0;
      }
      delta = next;
    }
  }
  return loss;
}
