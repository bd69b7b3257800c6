#!/usr/bin/env node
import { holdEarlySignals } from "./early-signals.js";

// First, before the commands' modules load: see early-signals.ts.
holdEarlySignals(process.argv[2]);
await import("./commands.js");
