import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { queueName } from "../queue/keys.js";
import type { WorkerRegistry } from "../telemetry/workers.js";
import type { Sample } from "./autoscaler.js";

/**
 * Reads what the autoscaler decides on: jobs waiting in every model's queue that is not paused
 * (BullMQ's wait, prioritized and delayed sets; active jobs are already being served) and a
 * processed-jobs counter summed from worker heartbeats. Heartbeat counters reset when a process restarts, so
 * the counter adds per-worker increases instead of trusting the raw sum.
 */
export class QueueProbe {
  private readonly queues: Queue[];
  private seen = new Map<string, number>();
  private processed = 0;

  constructor(
    connection: Redis,
    prefix: string,
    models: readonly string[],
    private readonly registry: WorkerRegistry,
  ) {
    this.queues = models.map((m) => {
      const q = new Queue(queueName(m), { connection, prefix });
      q.on("error", () => {});
      return q;
    });
  }

  async sample(): Promise<Sample> {
    // A paused queue's jobs wait for an operator, not for workers: more would not help.
    const counts = await Promise.all(
      this.queues.map(async (q): Promise<Record<string, number>> =>
        (await q.isPaused()) ? {} : q.getJobCounts("wait", "prioritized", "delayed"),
      ),
    );
    const depth = counts.reduce((sum, c) => sum + (c.wait ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0), 0);
    const now = new Map<string, number>();
    for (const w of await this.registry.list()) {
      const before = this.seen.get(w.id) ?? 0;
      this.processed += w.processed >= before ? w.processed - before : w.processed;
      now.set(w.id, w.processed);
    }
    this.seen = now;
    return { at: Date.now(), depth, processed: this.processed };
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.queues.map((q) => q.close()));
  }
}
