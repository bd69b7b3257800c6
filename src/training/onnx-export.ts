import onnxProto from "onnx-proto";
import { Mlp } from "./mlp.js";

const { onnx } = onnxProto;

const FLOAT = onnx.TensorProto.DataType.FLOAT;

export interface ExportOptions {
  /** Name of the input tensor: [batch, features]. */
  readonly input?: string;
  /** Name of the output tensor: [batch, classes] probabilities, or [batch, 1] values. */
  readonly output?: string;
  readonly docString?: string;
}

/**
 * Writes an MLP as an ONNX model (opset 13): MatMul → Add → Relu per hidden layer, then
 * Softmax for classifiers. The bytes depend only on the weights, so retraining with the same
 * seed reproduces the file exactly.
 */
export function exportMlp(model: Mlp, o: ExportOptions = {}): Uint8Array {
  const inputName = o.input ?? "features";
  const outputName = o.output ?? (model.loss === "mse" ? "value" : "probabilities");
  const initializer: InstanceType<typeof onnx.TensorProto>[] = [];
  const node: InstanceType<typeof onnx.NodeProto>[] = [];
  let prev = inputName;
  model.layers.forEach((layer, l) => {
    const last = l === model.layers.length - 1;
    initializer.push(tensor(`W${l}`, [layer.inputs, layer.outputs], layer.weights));
    initializer.push(tensor(`B${l}`, [layer.outputs], layer.bias));
    node.push(
      onnx.NodeProto.create({
        opType: "MatMul",
        input: [prev, `W${l}`],
        output: [`mm${l}`],
        name: `matmul${l}`,
      }),
    );
    const sum = last && model.loss === "mse" ? outputName : `z${l}`;
    node.push(
      onnx.NodeProto.create({ opType: "Add", input: [`mm${l}`, `B${l}`], output: [sum], name: `add${l}` }),
    );
    if (!last) {
      node.push(onnx.NodeProto.create({ opType: "Relu", input: [sum], output: [`h${l}`], name: `relu${l}` }));
      prev = `h${l}`;
    } else if (model.loss !== "mse") {
      node.push(
        onnx.NodeProto.create({
          opType: "Softmax",
          input: [sum],
          output: [outputName],
          name: "softmax",
          attribute: [
            onnx.AttributeProto.create({ name: "axis", type: onnx.AttributeProto.AttributeType.INT, i: -1 }),
          ],
        }),
      );
    }
  });
  const first = model.layers[0]!;
  const lastLayer = model.layers.at(-1)!;
  const graph = onnx.GraphProto.create({
    name: "mlp",
    node,
    initializer,
    input: [valueInfo(inputName, first.inputs)],
    output: [valueInfo(outputName, lastLayer.outputs)],
    docString: o.docString ?? "",
  });
  return encodeModel(graph, "inferline");
}

/** A model file holding `graph` (IR version 8, default opset 13), as ONNX Runtime loads it. */
export function encodeModel(graph: InstanceType<typeof onnx.GraphProto>, producerName: string): Uint8Array {
  const proto = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: "", version: 13 })],
    producerName,
    producerVersion: "1",
    graph,
  });
  return onnx.ModelProto.encode(proto).finish();
}

function tensor(name: string, dims: number[], data: Float32Array) {
  // raw_data is little-endian IEEE 754, which is what a Float32Array holds on every platform Node runs on.
  return onnx.TensorProto.create({
    name,
    dims,
    dataType: FLOAT,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  });
}

function valueInfo(name: string, width: number) {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: FLOAT,
        shape: onnx.TensorShapeProto.create({
          dim: [
            onnx.TensorShapeProto.Dimension.create({ dimParam: "batch" }),
            onnx.TensorShapeProto.Dimension.create({ dimValue: width }),
          ],
        }),
      }),
    }),
  });
}

/**
 * Reads back a model written by `exportMlp` into the training code's own network, so tests can
 * compare the served answer with the training code's forward pass on the very same weights.
 */
export function importMlp(bytes: Uint8Array, loss: "softmax-cross-entropy" | "mse"): Mlp {
  const model = onnx.ModelProto.decode(bytes);
  const inits = new Map((model.graph?.initializer ?? []).map((t) => [t.name ?? "", t]));
  const layers: Mlp["layers"] = [];
  for (let l = 0; inits.has(`W${l}`); l++) {
    const w = inits.get(`W${l}`)!;
    const b = inits.get(`B${l}`);
    if (!b) throw new Error(`B${l} missing`);
    const [inputs, outputs] = (w.dims ?? []).map(Number);
    if (!inputs || !outputs) throw new Error(`W${l} has no shape`);
    layers.push({ inputs, outputs, weights: floats(w.rawData), bias: floats(b.rawData) });
  }
  if (layers.length === 0) throw new Error("not a model written by exportMlp");
  return new Mlp(layers, loss);
}

function floats(raw: Uint8Array | null | undefined): Float32Array {
  if (!raw) throw new Error("tensor without raw_data");
  // Copy: the decoded bytes are a view into a larger buffer, not necessarily 4-byte aligned.
  const copy = new Uint8Array(raw.byteLength);
  copy.set(raw);
  return new Float32Array(copy.buffer);
}
