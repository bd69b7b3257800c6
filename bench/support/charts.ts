import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";

/**
 * Renders a Vega-Lite spec to a standalone SVG string, in Node, without a browser or canvas
 * (text is measured by Vega's estimate, which is close enough for axis labels).
 */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Shared look: white background, readable fonts, a fixed width so the docs line up. */
export const BASE_CONFIG = {
  background: "white",
  padding: 12,
  config: {
    font: "Helvetica, Arial, sans-serif",
    title: { fontSize: 14, anchor: "start" as const, subtitleFontSize: 11, subtitleColor: "#555" },
    axis: { labelFontSize: 11, titleFontSize: 12, gridColor: "#e6e6e6" },
    legend: { labelFontSize: 11, titleFontSize: 11, orient: "bottom" as const },
    view: { stroke: null },
  },
};
