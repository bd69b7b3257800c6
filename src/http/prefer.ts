/**
 * `Prefer: wait=N` (RFC 7240 §4.3: N is whole seconds). Returns the wait in seconds, capped (any
 * number of digits), or 0 when absent. Per the RFC only the first `wait` counts, and a
 * preference that cannot be honoured is ignored, so a malformed value (a fraction, a sign, an
 * exponent) means 0. Text inside a quoted value is never read as a preference of its own.
 */
export function preferredWaitSeconds(header: string | string[] | undefined, capSeconds: number): number {
  const text = Array.isArray(header) ? header.join(",") : (header ?? "");
  for (const { name, value } of preferences(text)) {
    if (name !== "wait") continue;
    return /^\d+$/.test(value) ? Math.min(Number(value), capSeconds) : 0;
  }
  return 0;
}

/**
 * The preferences of a Prefer field, in order: `token [= word] *(; parameter)` separated by
 * commas, names lowercased, values unquoted; parameters are dropped. Commas and semicolons
 * inside a quoted string (with its backslash escapes) belong to the string.
 */
function* preferences(text: string): Generator<{ name: string; value: string }> {
  let head = "";
  let inParams = false;
  let quoted = false;
  const flush = () => {
    const eq = head.indexOf("=");
    const name = (eq < 0 ? head : head.slice(0, eq)).trim().toLowerCase();
    let value = eq < 0 ? "" : head.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2)
      value = value.slice(1, -1).replace(/\\(.)/g, "$1");
    head = "";
    inParams = false;
    return { name, value };
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === "\\") {
        if (!inParams) head += c + (text[i + 1] ?? "");
        i++;
        continue;
      }
      if (c === '"') quoted = false;
    } else if (c === '"') {
      quoted = true;
    } else if (c === ",") {
      const pref = flush();
      if (pref.name) yield pref;
      continue;
    } else if (c === ";") {
      inParams = true;
    }
    if (!inParams) head += c;
  }
  const last = flush();
  if (last.name) yield last;
}

/** How the routes that honour `Prefer` document it (a request header, not checked beyond its type). */
export const PREFER_HEADER = {
  type: "string",
  description:
    "RFC 7240. `wait=N` holds the request up to N whole seconds (capped by WAIT_MAX_SECONDS) for the result; the answer says `Preference-Applied: wait=N`. Other preferences are ignored.",
} as const;
