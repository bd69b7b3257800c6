import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DepthGate } from "../../src/queue/depth-gate.js";

/**
 * Two API processes sharing one queue, each with its own gate: they add jobs without asking
 * Redis while their gates allow, and run the exact check (which reads the true depth and admits
 * only below the cap) otherwise. Whatever the cap, the queue must never pass it.
 */
function fillWithTwo(cap: number): number {
  const gates = [new DepthGate(60_000), new DepthGate(60_000)];
  let depth = 0;
  // Both read the empty queue, as two processes would on their first requests.
  for (const g of gates) g.read("m", depth);
  for (let round = 0; round < 2 * cap; round++) {
    for (const g of gates) {
      if (g.admit("m", cap)) {
        depth++;
        g.settled("m", 1);
      } else if (depth < cap) {
        depth++;
        g.read("m", depth);
      } else g.read("m", depth);
    }
  }
  return depth;
}

describe("DepthGate", () => {
  it("never lets two processes take a queue past its cap, odd or even", () => {
    for (let cap = 1; cap <= 40; cap++) assert.equal(fillWithTwo(cap), cap, `cap ${cap}`);
  });

  it("skips the check only while the reading is fresh and the queue within half the cap", async () => {
    const gate = new DepthGate(50);
    assert.equal(gate.admit("m", 100), false, "no reading yet");
    gate.read("m", 49);
    assert.equal(gate.admit("m", 100), true, "49 + this one = 50: half the cap");
    gate.settled("m", 1);
    assert.equal(gate.admit("m", 100), false, "51 would pass half the cap");
    gate.read("m", 10);
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(gate.admit("m", 100), false, "the reading is older than 50 ms");
    const off = new DepthGate(0);
    off.read("m", 0);
    assert.equal(off.admit("m", 100), false, "0 ms: every request is checked");
  });

  it("counts what it admitted, and what Redis is asked, before any add is answered", () => {
    const gate = new DepthGate(60_000);
    gate.read("m", 0);
    // Requests arriving together: each admission counts at once, not when its add lands.
    let granted = 0;
    for (let i = 0; i < 100; i++) if (gate.admit("m", 10)) granted++;
    assert.equal(granted, 5, "half the cap");
    assert.equal(gate.unseen("m"), 5, "Redis has not seen them: its checks count them");
    gate.settled("m", 5);
    assert.equal(gate.unseen("m"), 0);
    assert.equal(gate.admit("m", 10), false, "still counted once added");
    // Admissions sent to Redis before a reading may land after it: they count until answered.
    gate.read("m", 0);
    const answered = gate.asked("m", 4);
    assert.equal(gate.admit("m", 10), true, "0 + 4 asked + this one = 5");
    assert.equal(gate.admit("m", 10), false);
    answered();
    gate.read("m", 0);
    assert.equal(gate.admit("m", 10), true);
  });
});
