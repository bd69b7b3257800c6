import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { describe, it } from "node:test";
import { whenAborted } from "../../src/lifecycle/aborted.js";

void describe("a wait's view of its client's AbortSignal", () => {
  void it("resolves once the signal aborts, or at once if it already has", async () => {
    const live = new AbortController();
    const pending = whenAborted(live.signal);
    live.abort();
    assert.equal(await pending.promise, "aborted");
    const gone = new AbortController();
    gone.abort();
    assert.equal(await whenAborted(gone.signal).promise, "aborted");
  });

  void it("leaves no listener behind on a signal that outlives the waits disposed", () => {
    const stream = new AbortController();
    for (let i = 0; i < 20; i++) whenAborted(stream.signal).dispose();
    assert.equal(getEventListeners(stream.signal, "abort").length, 0);
    const held = whenAborted(stream.signal);
    assert.equal(getEventListeners(stream.signal, "abort").length, 1);
    held.dispose();
    assert.equal(getEventListeners(stream.signal, "abort").length, 0);
  });
});
