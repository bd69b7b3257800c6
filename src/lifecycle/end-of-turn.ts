/**
 * Runs `fn` once at the end of the current turn of the event loop (in `setImmediate`, after the
 * turn's I/O callbacks), however often the returned function is called during the turn. The
 * way to gather the writes of one turn into one system call.
 *
 * With `afterDeferred`, `fn` runs one turn later, after what this turn itself deferred with
 * `setImmediate` (a worker's batch of jobs, run once the jobs fetched together are in): what
 * that deferred work writes joins the same call, so a job's completion goes out with the fetch
 * before it rather than behind a system call of its own. The price is one more pass of the event
 * loop, microseconds when it is idle. All `afterDeferred` functions of a turn share that pass.
 */
export function endOfTurn(fn: () => void, { afterDeferred = false } = {}): () => void {
  if (afterDeferred) return () => afterDeferredWork(fn);
  let scheduled = false;
  const run = () => {
    scheduled = false;
    fn();
  };
  return () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(run);
  };
}

/** Functions waiting for the pass after the current turn's deferred work; one pass for all. */
const deferredPass = new Set<() => void>();
let passScheduled = false;

function runDeferredPass(): void {
  passScheduled = false;
  const fns = [...deferredPass];
  deferredPass.clear();
  for (const fn of fns) fn();
}

function afterDeferredWork(fn: () => void): void {
  deferredPass.add(fn);
  if (passScheduled) return;
  passScheduled = true;
  setImmediate(() => setImmediate(runDeferredPass));
}

/**
 * Runs `fn` once after the commands this turn issued have gone out (see `afterDeferred`): for
 * work that should not delay them, such as a log line about what they did.
 */
export function afterWrites(fn: () => void): void {
  afterDeferredWork(fn);
}
