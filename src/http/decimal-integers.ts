import type { ErrorObject, ValidateFunction } from "ajv";

/** An integer as clients write one in a query string or path: optional minus, then digits. */
const DECIMAL = /^-?\d+$/;

type Validator = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };

/**
 * A validator for text parts of a request (query string, path) that takes an integer only as
 * decimal digits. Converting, Ajv reads text as JavaScript's Number() does: "0x10" as 16, "1e3"
 * as 1000, " 5 " as 5; a client who sent that made a mistake, and is told so (400), not served
 * a value it did not mean. Other properties are left to `validate`.
 */
export function decimalIntegers(schema: unknown, validate: ValidateFunction): Validator {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> }).properties ?? {};
  const integers = Object.keys(properties).filter((name) => properties[name]?.type === "integer");
  if (integers.length === 0) return validate;
  const check: Validator = (data) => {
    const given = (data ?? {}) as Record<string, unknown>;
    for (const name of integers) {
      const value = given[name];
      if (typeof value === "string" && !DECIMAL.test(value)) {
        check.errors = [
          {
            instancePath: `/${name}`,
            schemaPath: `#/properties/${name}/type`,
            keyword: "type",
            params: { type: "integer" },
            message: "must be an integer in decimal digits",
          },
        ];
        return false;
      }
    }
    const ok = validate(data);
    check.errors = validate.errors;
    return ok;
  };
  return check;
}
