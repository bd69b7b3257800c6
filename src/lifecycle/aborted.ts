/**
 * A wait's view of an AbortSignal: `promise` resolves "aborted" once the signal is (at once if
 * it already is); `dispose` takes its listener off again. A wait that ends otherwise disposes:
 * the signal can outlive it (an event stream waits again and again on its client's), and a
 * listener per finished wait would pile up on it.
 */
export function whenAborted(signal: AbortSignal): { promise: Promise<"aborted">; dispose: () => void } {
  let onAbort = () => {};
  const promise = new Promise<"aborted">((resolve) => {
    onAbort = () => resolve("aborted");
  });
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return { promise, dispose: () => signal.removeEventListener("abort", onAbort) };
}
