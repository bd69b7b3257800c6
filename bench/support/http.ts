/** Small HTTP helpers the scenarios share (127.0.0.1 only). */
import { Pool } from "undici";

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
  const res = await request(base, "POST", `/api/ml/${model}`, input, { prefer: `wait=${waitS}` });
  let body = res.body;
  if (res.status !== 200 && res.status !== 202) throw new Error(`POST ${res.status}`);
  for (let i = 0; i < rounds && res.status === 202 && body.status !== "completed"; i++) {
    const r = await request(base, "GET", `/api/results/${String(body.job_id)}`, undefined, {
      prefer: `wait=${waitS}`,
    });
    body = r.body;
    if (r.status === 200) break;
    if (r.status !== 202) throw new Error(`GET ${r.status}`);
  }
  if (body.status !== "completed") throw new Error(`job ${String(body.status)}: ${JSON.stringify(body)}`);
  return body;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const pools = new Map<string, Pool>();

/**
 * One request through a keep-alive undici pool per base URL. It costs the client a fraction of
 * the CPU fetch() does (fetch builds WHATWG streams and objects per call), which matters on a
 * small box where the load generator shares cores with the system under test.
 */
export async function request(
  base: string,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: JobBody }> {
  let pool = pools.get(base);
  if (!pool) pools.set(base, (pool = new Pool(base, { connections: 128 })));
  const res = await pool.request({
    method,
    path,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.statusCode, headers: res.headers, body: (await res.body.json()) as JobBody };
}

/** Closes the pools `request` opened (end of a scenario). */
export async function closePools(): Promise<void> {
  await Promise.all([...pools.values()].map((p) => p.close()));
  pools.clear();
}
