import { spawnSync } from "node:child_process";
import parse from "parse-prometheus-text-format";

export interface Sample {
  readonly labels?: Record<string, string>;
  readonly value?: string;
}
export interface Family {
  readonly name: string;
  readonly type: string;
  readonly metrics: Sample[];
}

const parseText = parse as (text: string) => Family[];

export interface Scrape {
  readonly text: string;
  /** Families as typed by the exposition (COUNTER, GAUGE, HISTOGRAM, ...). */
  readonly families: Family[];
  /**
   * Every series by its own name. The parser folds a labelled histogram's series into one
   * sample without labels, so histograms are read through their `_bucket`, `_sum` and `_count`
   * series: the text is parsed once more without the histogram TYPE lines.
   */
  readonly series: Family[];
}

/** Fetches /metrics and parses it with a parser that is not ours, so the format is checked. */
export async function scrape(url: string): Promise<Scrape> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`${url}: ${res.status}`);
  const text = await res.text();
  return {
    text,
    families: parseText(text),
    series: parseText(text.replace(/^# TYPE \S+ histogram$/gm, "")),
  };
}

/** Value of the first series `name` whose labels include `labels` (0 when absent). */
export function value(s: Scrape, name: string, labels: Record<string, string> = {}): number {
  // Series of one histogram interleave (bucket, sum, count per label set): several families.
  const m = s.series
    .filter((f) => f.name === name)
    .flatMap((f) => f.metrics)
    .find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  return m?.value === undefined ? 0 : Number(m.value);
}

/**
 * `promtool check metrics` problems with our own metrics (empty when clean, undefined when
 * promtool is absent). prom-client's Node.js gauges named `..._total` are its choice, not ours.
 */
export function promtoolProblems(text: string): string | undefined {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  if (r.error) return undefined;
  return `${r.stdout}${r.stderr}`
    .split("\n")
    .filter(
      (l) =>
        l.trim() !== "" &&
        !/^inferline_nodejs_\S+ non-counter metrics should not have "_total" suffix$/.test(l),
    )
    .join("\n");
}
