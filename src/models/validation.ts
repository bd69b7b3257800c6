import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import type { JsonSchema, ModelDescriptor } from "./types.js";

export interface InputProblem {
  readonly field: string;
  readonly message: string;
}

/** The field a problem names when it is with the input as a whole (not an object, say). */
export const WHOLE_INPUT = "(body)";

/** At most this many problems are reported for one input (a body can hold thousands of bad keys). */
export const MAX_PROBLEMS = 20;

/**
 * Compiles each model version's input schema once and checks inputs against it. Every problem
 * is reported (up to MAX_PROBLEMS), so a caller fixes an input in one round, not field by field.
 */
// addUsedSchema off: Ajv would otherwise register every schema that has an `$id` and refuse a
// second one with the same `$id` (the same manifest read again by a reload, or the next version).
// strictNumbers on (strict: false turns it off): JSON.parse reads 1e400 as Infinity, which is no
// number a job can carry (it is queued as null).
const AJV_OPTIONS = {
  strict: false,
  strictNumbers: true,
  allErrors: true,
  coerceTypes: false,
  addUsedSchema: false,
} as const;

/**
 * Throws Ajv's message when `schema` cannot be compiled (a type that does not exist, a pattern
 * that is no regular expression, a $ref to nowhere): such a manifest could validate no input.
 */
export function assertCompilableSchema(schema: JsonSchema): void {
  new Ajv(AJV_OPTIONS).compile(schema);
}

export class InputValidator {
  private readonly ajv = new Ajv(AJV_OPTIONS);
  private readonly compiled = new WeakMap<JsonSchema, ValidateFunction>();
  /**
   * By the schema's text: every reload reads the manifests into new objects, and Ajv keeps
   * every schema object it compiles, so keyed by object alone each reload would add a compiled
   * copy of every schema for good.
   */
  private readonly byText = new Map<string, ValidateFunction>();

  /**
   * Returns the problems with `input`, empty when it is valid: against the manifest's input
   * schema, then against what the preprocessing needs (for fields the first found no fault with).
   */
  check(descriptor: ModelDescriptor, input: unknown): InputProblem[] {
    const problems = this.against(descriptor.inputSchema, input);
    if (descriptor.featureSchema && problems.length < MAX_PROBLEMS) {
      const seen = new Set(problems.map((p) => p.field));
      for (const p of this.against(descriptor.featureSchema, input))
        if (!seen.has(p.field) && problems.length < MAX_PROBLEMS) problems.push(p);
    }
    return problems;
  }

  private against(schema: JsonSchema, input: unknown): InputProblem[] {
    let validate = this.compiled.get(schema);
    if (!validate) {
      const text = JSON.stringify(schema);
      validate = this.byText.get(text);
      if (!validate) {
        validate = this.ajv.compile(schema);
        this.byText.set(text, validate);
      }
      this.compiled.set(schema, validate);
    }
    if (validate(input)) return [];
    return (validate.errors ?? []).slice(0, MAX_PROBLEMS).map(describe);
  }
}

function describe(e: ErrorObject): InputProblem {
  const base = e.instancePath
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  if (e.keyword === "required") base.push(String((e.params as { missingProperty: string }).missingProperty));
  if (e.keyword === "additionalProperties") {
    base.push(String((e.params as { additionalProperty: string }).additionalProperty));
    return { field: base.join(".") || WHOLE_INPUT, message: "is not an input of this model" };
  }
  const field = base.join(".") || WHOLE_INPUT;
  return { field, message: e.keyword === "required" ? "is required" : ajvMessage(e) };
}

/** Ajv's message for one error, with the allowed values spelled out where Ajv only alludes to them. */
export function ajvMessage(e: ErrorObject): string {
  if (e.keyword === "enum") {
    const allowed = (e.params as { allowedValues?: unknown[] }).allowedValues ?? [];
    return `must be one of ${allowed.map((v) => JSON.stringify(v)).join(", ")}`;
  }
  return e.message ?? "is invalid";
}

/** "text is required; age must be number" */
export function problemsToMessage(problems: readonly InputProblem[]): string {
  return problems.map((p) => `${p.field} ${p.message}`).join("; ");
}
