import http from "node:http";

/** A closed-loop load generator: `concurrency` callers repeat `request` until `ms` pass. */
export interface LoadResult {
  readonly total: number;
  readonly failed: number;
  readonly byStatus: Record<string, number>;
}

export async function load(
  ms: number,
  concurrency: number,
  request: (i: number) => Promise<Response | number>,
  onProgress?: (done: number) => void,
  /** Ends the run early once it returns true. */
  shouldStop: () => boolean = () => false,
): Promise<LoadResult> {
  const deadline = Date.now() + ms;
  const byStatus: Record<string, number> = {};
  let total = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < deadline && !shouldStop()) {
        const i = total++;
        let key: string;
        try {
          const res = await request(i);
          const status = typeof res === "number" ? res : res.status;
          if (typeof res !== "number") await res.arrayBuffer();
          key = String(status);
          if (status >= 400) failed++;
        } catch (err) {
          key = `error:${(err as Error).message}`;
          failed++;
        }
        byStatus[key] = (byStatus[key] ?? 0) + 1;
        onProgress?.(total);
      }
    }),
  );
  return { total, failed, byStatus };
}

/** GET on a fresh connection each time (no keep-alive reuse), resolving with the status. */
export function getOnce(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}
