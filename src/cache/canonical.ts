import { createHash } from "node:crypto";

/**
 * The canonical form of an input: object keys sorted at every depth, -0 written as 0 (JSON
 * already writes every finite number one way). Two inputs that mean the same get one hash.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && Object.is(value, -0)) return "0";
    return JSON.stringify(value) ?? "null";
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(",")}}`;
}

export function inputHash(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value)).digest("hex");
}

/**
 * An input's key among a version's cached results and jobs in flight: what the version's files
 * hold (ModelDescriptor.fingerprint), then the input's hash. A version rewritten in place keys
 * its results apart from those of what it held before. No colon: keys append to it after one.
 */
export function resultKey(fingerprint: string, input: unknown): string {
  return fingerprint === "" ? inputHash(input) : `${fingerprint}.${inputHash(input)}`;
}
