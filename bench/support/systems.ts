/**
 * The systems the overhead scenario compares, by the names its results are keyed on (the report
 * reads them back by the same names).
 */
export const SYSTEMS = {
  list: "list queue (tutorial)",
  bare: "bare BullMQ",
  floor: "bare BullMQ + minimal HTTP route",
  inferline: "Inferline (HTTP, Prefer: wait)",
} as const;
