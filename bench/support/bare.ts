import type { Queue, QueueEvents } from "bullmq";

/**
 * One job the bare BullMQ way, as the overhead baselines run it (directly, and behind the
 * minimal HTTP route): add it, then wait for its completion on QueueEvents.
 */
export async function addAndWait(
  queue: Queue,
  events: QueueEvents,
  data: unknown,
): Promise<{ jobId: string | undefined; result: unknown }> {
  const job = await queue.add("x", data, { removeOnComplete: { age: 3600 }, removeOnFail: { age: 3600 } });
  const result: unknown = await job.waitUntilFinished(events, 10_000);
  return { jobId: job.id, result };
}
