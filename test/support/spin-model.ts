import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import onnxProto from "onnx-proto";
import { encodeModel } from "../../src/training/onnx-export.js";

const { onnx } = onnxProto;
const T = onnx.TensorProto.DataType;

/** Loop iterations per unit of input (about 2 to 3 µs each on one core, so 1 ≈ 2.5 s). */
export const SPIN_ITERATIONS_PER_UNIT = 1e6;

function valueInfo(name: string, elemType: number, dims: readonly (number | string)[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType,
        shape: onnx.TensorShapeProto.create({
          dim: dims.map((d) =>
            typeof d === "number"
              ? onnx.TensorShapeProto.Dimension.create({ dimValue: d })
              : onnx.TensorShapeProto.Dimension.create({ dimParam: d }),
          ),
        }),
      }),
    }),
  });
}

const intAttr = (name: string, i: number) =>
  onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i });

/**
 * A real ONNX model whose inference takes as long as its input asks: `y = x` ([batch, 1]), after
 * an ONNX `Loop` of sum(x) × SPIN_ITERATIONS_PER_UNIT empty iterations. An all-zero batch (the
 * warm-up) returns at once; x = 1 takes seconds; x = 1e6 runs for weeks, inside ONNX Runtime's
 * native code, where nothing in JavaScript can interrupt it.
 */
export function spinModel(): Uint8Array {
  const body = onnx.GraphProto.create({
    name: "spin_body",
    node: [
      onnx.NodeProto.create({ opType: "Identity", input: ["cond_in"], output: ["cond_out"] }),
      onnx.NodeProto.create({ opType: "Identity", input: ["v_in"], output: ["v_out"] }),
    ],
    input: [
      valueInfo("i", T.INT64, []),
      valueInfo("cond_in", T.BOOL, []),
      valueInfo("v_in", T.FLOAT, ["batch", 1]),
    ],
    output: [valueInfo("cond_out", T.BOOL, []), valueInfo("v_out", T.FLOAT, ["batch", 1])],
  });
  const graph = onnx.GraphProto.create({
    name: "spin",
    node: [
      onnx.NodeProto.create({
        opType: "ReduceSum",
        input: ["x"],
        output: ["sum"],
        attribute: [intAttr("keepdims", 0)],
      }),
      onnx.NodeProto.create({ opType: "Mul", input: ["sum", "scale"], output: ["trips_f"] }),
      onnx.NodeProto.create({
        opType: "Cast",
        input: ["trips_f"],
        output: ["trips"],
        attribute: [intAttr("to", T.INT64)],
      }),
      onnx.NodeProto.create({
        opType: "Loop",
        input: ["trips", "", "x"],
        output: ["y"],
        attribute: [
          onnx.AttributeProto.create({
            name: "body",
            type: onnx.AttributeProto.AttributeType.GRAPH,
            g: body,
          }),
        ],
      }),
    ],
    initializer: [
      onnx.TensorProto.create({
        name: "scale",
        dims: [],
        dataType: T.FLOAT,
        floatData: [SPIN_ITERATIONS_PER_UNIT],
      }),
    ],
    input: [valueInfo("x", T.FLOAT, ["batch", 1])],
    output: [valueInfo("y", T.FLOAT, ["batch", 1])],
  });
  return encodeModel(graph, "inferline-tests");
}

/**
 * Writes `<repo>/<name>/1/` with the spin model as a regression model taking `{ "spin": [x] }`;
 * `onnx` is merged into the manifest's onnx section. Returns the version folder.
 */
export async function writeSpinModel(
  repo: string,
  name = "spin",
  onnxSection: Record<string, unknown> = {},
): Promise<string> {
  const dir = path.join(repo, name, "1");
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "spin.onnx"), spinModel());
  const manifest = {
    name,
    version: "1",
    description: "Returns its input after a loop as long as the input asks for.",
    kind: "onnx",
    file: "spin.onnx",
    input: {
      type: "object",
      properties: { spin: { type: "array", items: { type: "number" }, minItems: 1, maxItems: 1 } },
      required: ["spin"],
      additionalProperties: false,
    },
    preprocessing: { type: "vector", field: "spin", dimensions: 1 },
    onnx: { input: "x", output: "y", ...onnxSection },
    output: { task: "regression" },
    batching: { maxBatchSize: 8, maxDelayMs: 0 },
    cache: { ttlSeconds: 0 },
  };
  await writeFile(path.join(dir, "manifest.json"), JSON.stringify(manifest, null, 2));
  return dir;
}
