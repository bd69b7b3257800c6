/**
 * ONNX Runtime reports usage to Microsoft unless ORT_DISABLE_TELEMETRY is set, and to do so keeps
 * a device id under $HOME/.cache and a debug log in /tmp: a server would call out and write
 * outside its data (a read-only HOME even gets a non-JSON warning on stderr). Imported before
 * onnxruntime-node wherever it is loaded, in the main thread: session threads and the native
 * library read the process's environment, which only the main thread's process.env writes. An
 * operator's own value stands.
 */
process.env.ORT_DISABLE_TELEMETRY ??= "1";
