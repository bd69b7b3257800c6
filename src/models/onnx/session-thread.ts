/**
 * Entry of the thread that owns one ONNX Runtime session. onnxruntime-node's `run` executes on
 * the calling thread, so a worker process keeps its event loop (job leases, heartbeats, fetching
 * the next jobs) free by running every session here.
 */
import { parentPort, workerData } from "node:worker_threads";
import ort from "onnxruntime-node";
import type { SessionInit, ThreadReply, ThreadRequest } from "./session-host.js";

const init = workerData as SessionInit;
const port = parentPort!;

try {
  const session = await ort.InferenceSession.create(init.file, init.options);
  port.postMessage({
    type: "ready",
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    inputShapes: Object.fromEntries(
      session.inputMetadata.map((m) => [m.name, m.isTensor ? [...m.shape] : []]),
    ),
  } satisfies ThreadReply);
  // onnxruntime-node starts a run in a later turn (setImmediate): a release arriving meanwhile
  // waits for the runs asked for before it, or it would free the session under them.
  const inFlight = new Set<Promise<void>>();
  port.on("message", (msg: ThreadRequest) => {
    if (msg.type === "release") {
      void Promise.allSettled(inFlight)
        .then(() => session.release())
        .finally(() => port.close());
      return;
    }
    const run = session
      .run({ [msg.input]: new ort.Tensor("float32", msg.data, msg.dims) }, [msg.output])
      .then((out) => {
        const t = out[msg.output];
        if (!t) throw new Error(`model gave no output "${msg.output}"`);
        if (!(t.data instanceof Float32Array) && !(t.data instanceof Float64Array))
          throw new Error(`output "${msg.output}" is ${t.type}, expected float`);
        // A copy: the tensor's memory may belong to ONNX Runtime and cannot be transferred.
        const data = t.data.slice();
        port.postMessage({ type: "result", id: msg.id, data, dims: [...t.dims] } satisfies ThreadReply, [
          data.buffer,
        ]);
      })
      .catch((err: Error) =>
        port.postMessage({ type: "error", id: msg.id, message: err.message } satisfies ThreadReply),
      );
    inFlight.add(run);
    void run.finally(() => inFlight.delete(run));
  });
} catch (err) {
  port.postMessage({ type: "failed", message: (err as Error).message } satisfies ThreadReply);
}
