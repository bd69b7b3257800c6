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
      if (g.hasRoom("m", cap)) {
        depth++;
        g.added("m", 1);
      } else {
        g.read("m", depth);
        if (depth < cap) {
          depth++;
          g.added("m", 1);
        }
      }
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
    assert.equal(gate.hasRoom("m", 100), false, "no reading yet");
    gate.read("m", 49);
    assert.equal(gate.hasRoom("m", 100), true, "49 + this one = 50: half the cap");
    gate.added("m", 1);
    assert.equal(gate.hasRoom("m", 100), false, "51 would pass half the cap");
    gate.read("m", 10);
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(gate.hasRoom("m", 100), false, "the reading is older than 50 ms");
    const off = new DepthGate(0);
    off.read("m", 0);
    assert.equal(off.hasRoom("m", 100), false, "0 ms: every request is checked");
  });
});
