import type { Socket } from "node:net";
import type { Cluster, Redis } from "ioredis";
import { endOfTurn } from "../lifecycle/end-of-turn.js";

const COALESCED = Symbol("inferline.coalescedWrites");

/**
 * Sends the commands one connection issues during a turn of the event loop in one write.
 *
 * ioredis writes every command to its socket at once: one system call each. A worker finishing
 * a batch of jobs, or an API answering the requests that arrived together, issues dozens of
 * commands in one turn, and on small virtual machines those system calls cost more than the
 * commands. Corking the socket at the first write of a turn and uncorking it in `setImmediate`
 * (after the poll phase has run every I/O callback of the turn) hands them to the kernel as
 * one `writev`. Order on the connection is unchanged; a command waits at most for the rest of
 * the current turn.
 *
 * ioredis's own auto-pipelining batches only within one tick (one I/O callback) and builds a
 * Pipeline per batch, copying every script BullMQ defined on the connection, which costs more
 * than it saves when batches are small.
 */
export function coalesceWrites<T extends Redis | Cluster>(client: T): T {
  if ("nodes" in client && typeof client.nodes === "function") {
    // A cluster's node connections come and go with the topology.
    client.on("+node", (node: Redis) => coalesceWrites(node));
    return client;
  }
  const redis = client as Redis;
  // Each (re)connection brings a new socket; ioredis announces it with "connect".
  redis.on("connect", () => corkPerTurn(redis.stream));
  corkPerTurn(redis.stream);
  return client;
}

function corkPerTurn(socket: (Socket & { [COALESCED]?: true }) | undefined): void {
  if (!socket || socket[COALESCED]) return;
  socket[COALESCED] = true;
  const write = socket.write.bind(socket);
  const uncork = endOfTurn(() => socket.uncork());
  socket.write = ((...args: Parameters<Socket["write"]>): boolean => {
    if (socket.writableCorked === 0) {
      socket.cork();
      uncork();
    }
    return write(...args);
  }) as Socket["write"];
}
