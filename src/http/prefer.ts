/**
 * `Prefer: wait=N` (RFC 7240 §4.3: N is whole seconds). Returns the wait in seconds, capped (any
 * number of digits), or 0 when absent. Per the RFC a preference that cannot be honoured is
 * ignored, so malformed values (a fraction, a sign, an exponent) mean 0.
 */
export function preferredWaitSeconds(header: string | string[] | undefined, capSeconds: number): number {
  const values = Array.isArray(header) ? header : header ? [header] : [];
  for (const value of values) {
    for (const part of value.split(",")) {
      const m = /^\s*wait\s*=\s*"?(\d+)"?\s*(?:;.*)?$/i.exec(part);
      if (m?.[1]) return Math.min(Number(m[1]), capSeconds);
    }
  }
  return 0;
}

/** How the routes that honour `Prefer` document it (a request header, not checked beyond its type). */
export const PREFER_HEADER = {
  type: "string",
  description:
    "RFC 7240. `wait=N` holds the request up to N whole seconds (capped by WAIT_MAX_SECONDS) for the result; the answer says `Preference-Applied: wait=N`. Other preferences are ignored.",
} as const;
