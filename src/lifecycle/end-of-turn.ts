/**
 * Runs `fn` once at the end of the current turn of the event loop (in `setImmediate`, after the
 * turn's I/O callbacks), however often the returned function is called during the turn. The
 * way to gather the writes of one turn into one system call.
 */
export function endOfTurn(fn: () => void): () => void {
  return oncePending(fn, (run) => () => setImmediate(run));
}

/**
 * Runs `fn` once when the callback running now, and every promise reaction it set off, is done
 * (a `process.nextTick` queued from a microtask runs once the microtask queue is empty), however
 * often the returned function is called meanwhile. Gathers the writes of one callback, not of
 * the whole turn: they leave before the event loop polls for more I/O.
 */
export function endOfCallback(fn: () => void): () => void {
  return oncePending(fn, (run) => {
    const defer = () => process.nextTick(run);
    return () => queueMicrotask(defer);
  });
}

/**
 * A trigger that runs `fn` later, once however often it is pulled meanwhile; `scheduler` is
 * given the function to run and returns what schedules it (built once, nothing per pull).
 */
function oncePending(fn: () => void, scheduler: (run: () => void) => () => void): () => void {
  let scheduled = false;
  const schedule = scheduler(() => {
    scheduled = false;
    fn();
  });
  return () => {
    if (scheduled) return;
    scheduled = true;
    schedule();
  };
}
