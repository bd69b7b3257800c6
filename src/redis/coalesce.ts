import type { Socket } from "node:net";
import type { Cluster, Redis } from "ioredis";
import { endOfCallback, endOfTurn } from "../lifecycle/end-of-turn.js";

const COALESCED = Symbol("inferline.coalescedWrites");

/**
 * How long a connection holds its commands: for the rest of the event-loop turn (`turn`), or
 * only until the callback that issued them and its promise reactions are done (`callback`).
 */
export type WriteGathering = "turn" | "callback";

/**
 * Sends the commands one connection issues during a turn of the event loop (or, with
 * `callback`, during one callback of it) in one write.
 *
 * ioredis writes every command to its socket at once: one system call each. A worker finishing
 * a batch of jobs, or an API answering the requests that arrived together, issues dozens of
 * commands in one turn, and on small virtual machines those system calls cost more than the
 * commands. Corking the socket at the first write of a turn and uncorking it in `setImmediate`
 * (after the poll phase has run every I/O callback of the turn) hands them to the kernel as
 * one `writev`. Order on the connection is unchanged; a command waits at most for the rest of
 * the current turn.
 *
 * `callback` gathers less but sends sooner: a worker's commands of one batch (its jobs complete in
 * one callback) still leave in one write, but before the event loop polls again, so a finished
 * job is not marked completed only after whatever that poll brings in has been handled. The API
 * keeps `turn`: the requests that arrive together each come in their own callback.
 *
 * ioredis's own auto-pipelining batches only within one tick (one I/O callback) and builds a
 * Pipeline per batch, copying every script BullMQ defined on the connection, which costs more
 * than it saves when batches are small.
 */
export function coalesceWrites<T extends Redis | Cluster>(client: T, gathering: WriteGathering = "turn"): T {
  if ("nodes" in client && typeof client.nodes === "function") {
    // A cluster's node connections come and go with the topology.
    client.on("+node", (node: Redis) => coalesceWrites(node, gathering));
    return client;
  }
  const redis = client as Redis;
  // Each (re)connection brings a new socket; ioredis announces it with "connect".
  redis.on("connect", () => cork(redis.stream, gathering));
  cork(redis.stream, gathering);
  return client;
}

function cork(socket: (Socket & { [COALESCED]?: true }) | undefined, gathering: WriteGathering): void {
  if (!socket || socket[COALESCED]) return;
  socket[COALESCED] = true;
  const write = socket.write.bind(socket);
  const uncork = (gathering === "turn" ? endOfTurn : endOfCallback)(() => socket.uncork());
  socket.write = ((...args: Parameters<Socket["write"]>): boolean => {
    if (socket.writableCorked === 0) {
      socket.cork();
      uncork();
    }
    return write(...args);
  }) as Socket["write"];
}
