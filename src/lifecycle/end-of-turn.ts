/**
 * Runs `fn` once at the end of the current turn of the event loop (in `setImmediate`, after the
 * turn's I/O callbacks), however often the returned function is called during the turn. The
 * way to gather the writes of one turn into one system call.
 */
export function endOfTurn(fn: () => void): () => void {
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
