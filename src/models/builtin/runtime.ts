import type { LoadedModel, ModelDescriptor, ModelRuntime } from "../types.js";
import { echoModel } from "./echo.js";
import { sentimentModel } from "./sentiment.js";

const IMPLEMENTATIONS: Record<string, (d: ModelDescriptor) => LoadedModel> = {
  sentiment: sentimentModel,
  echo: echoModel,
};

/** Models implemented in code, named by a manifest's `builtin` field. */
export const builtinRuntime: ModelRuntime = {
  kind: "builtin",
  async load(descriptor) {
    const impl = typeof descriptor.manifest.builtin === "string" ? descriptor.manifest.builtin : "";
    const make = IMPLEMENTATIONS[impl];
    if (!make) throw new Error(`unknown built-in model implementation "${impl}"`);
    return make(descriptor);
  },
};
