/** Small HTTP helpers the scenarios share (Node's fetch against 127.0.0.1 only). */

export interface JobBody {
  status?: string;
  job_id?: string;
  batch_size?: number;
  [k: string]: unknown;
}

/**
 * POST /api/ml/{model} with `Prefer: wait=<waitS>`; when it answers 202 (still running at the
 * end of the wait), waits on GET /api/results/{id} the same way, at most `rounds` times.
 * Resolves to the final body; rejects on any status other than 200/202.
 */
export async function predictAndWait(
  base: string,
  model: string,
  input: unknown,
  waitS = 30,
  rounds = 3,
): Promise<JobBody> {
  const res = await fetch(`${base}/api/ml/${model}`, {
    method: "POST",
    headers: { "content-type": "application/json", prefer: `wait=${waitS}` },
    body: JSON.stringify(input),
  });
  let body = (await res.json()) as JobBody;
  if (res.status !== 200 && res.status !== 202) throw new Error(`POST ${res.status}`);
  for (let i = 0; i < rounds && res.status === 202 && body.status !== "completed"; i++) {
    const r = await fetch(`${base}/api/results/${String(body.job_id)}`, {
      headers: { prefer: `wait=${waitS}` },
    });
    body = (await r.json()) as JobBody;
    if (r.status === 200) break;
    if (r.status !== 202) throw new Error(`GET ${r.status}`);
  }
  if (body.status !== "completed") throw new Error(`job ${String(body.status)}`);
  return body;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
