import type { z } from "zod";

/** Parses one section of a manifest with its schema; the error message names the bad field. */
export function parseSection<S extends z.ZodTypeAny>(schema: S, section: string, raw: unknown): z.output<S> {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    const at = [section, ...(first?.path ?? [])].join(".");
    throw new Error(`${at}: ${first?.message ?? "invalid"}`);
  }
  return parsed.data;
}
