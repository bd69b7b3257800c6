/** Callbacks queued with deferToImmediate that have not run yet. */
let pendingDeferred = 0;

/**
 * `setImmediate` for work the current turn's writes should wait for: connections that coalesce
 * with `afterDeferred` hold their commands until it has run, so what it writes joins them. A
 * worker's batcher defers each batch this way.
 */
export function deferToImmediate(fn: () => void): NodeJS.Immediate {
  pendingDeferred++;
  return setImmediate(() => {
    pendingDeferred--;
    fn();
  });
}

/**
 * Runs `fn` once at the end of the current turn of the event loop (in `setImmediate`, after the
 * turn's I/O callbacks), however often the returned function is called during the turn. The
 * way to gather the writes of one turn into one system call.
 *
 * With `afterDeferred`, when work queued with deferToImmediate is still to run at that point,
 * `fn` waits for it, one pass of the event loop longer: a worker's batch then runs first and its
 * completions leave with the fetch that preceded them, in one system call instead of two. Only
 * one pass: a batcher with more batches queued does not hold the writes for all of them.
 */
export function endOfTurn(fn: () => void, { afterDeferred = false } = {}): () => void {
  let scheduled = false;
  const run = () => {
    scheduled = false;
    fn();
  };
  const runAfterDeferred = () => {
    if (pendingDeferred > 0) setImmediate(run);
    else run();
  };
  return () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(afterDeferred ? runAfterDeferred : run);
  };
}

/**
 * Runs `fn` after the commands this turn issued have gone out (two passes of the event loop
 * later): for work that should not delay them, such as a log line about what they did.
 */
export function afterWrites(fn: () => void): void {
  setImmediate(() => setImmediate(fn));
}
