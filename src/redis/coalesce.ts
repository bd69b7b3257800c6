import type { Socket } from "node:net";
import type { Cluster, Redis } from "ioredis";
import { endOfTurn } from "../lifecycle/end-of-turn.js";

const COALESCED = Symbol("inferline.coalescedWrites");

/** When a connection's gathered commands leave (see coalesceWrites). */
export interface WriteTiming {
  /**
   * Also after the work the turn queued with deferToImmediate, when some is still to run: for a
   * worker, whose batches are queued that way, so a batch's completions leave with the fetch
   * that preceded them. One pass of the event loop later, and only then.
   */
  readonly afterDeferred?: boolean;
}

/**
 * Sends the commands one connection issues during a turn of the event loop in one write.
 *
 * ioredis writes every command to its socket at once: one system call each. A worker finishing
 * a batch of jobs, or an API answering the requests that arrived together, issues dozens of
 * commands in one turn, and on small virtual machines those system calls cost more than the
 * commands. Corking the socket at the first write of a turn and uncorking it in `setImmediate`
 * (after the poll phase has run every I/O callback of the turn; see WriteTiming for later)
 * hands them to the kernel as one `writev`. Order on the connection is unchanged; a command
 * waits at most for the rest of the current turn.
 *
 * ioredis's own auto-pipelining batches only within one tick (one I/O callback) and builds a
 * Pipeline per batch, copying every script BullMQ defined on the connection, which costs more
 * than it saves when batches are small.
 */
export function coalesceWrites<T extends Redis | Cluster>(client: T, timing: WriteTiming = {}): T {
  if ("nodes" in client && typeof client.nodes === "function") {
    // A cluster's node connections come and go with the topology.
    client.on("+node", (node: Redis) => coalesceWrites(node, timing));
    return client;
  }
  const redis = client as Redis;
  // Each (re)connection brings a new socket; ioredis announces it with "connect".
  redis.on("connect", () => corkPerTurn(redis.stream, timing));
  corkPerTurn(redis.stream, timing);
  return client;
}

function corkPerTurn(socket: (Socket & { [COALESCED]?: true }) | undefined, timing: WriteTiming): void {
  if (!socket || socket[COALESCED]) return;
  socket[COALESCED] = true;
  const write = socket.write.bind(socket);
  const uncork = endOfTurn(() => socket.uncork(), { afterDeferred: timing.afterDeferred ?? false });
  socket.write = ((...args: Parameters<Socket["write"]>): boolean => {
    if (socket.writableCorked === 0) {
      socket.cork();
      uncork();
    }
    return write(...args);
  }) as Socket["write"];
}
