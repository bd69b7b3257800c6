#!/usr/bin/env node
// Part of `npm run build`: copies the files tsc does not emit (the dashboard's HTML, JS and CSS)
// from src/ to dist/.
import { cpSync, mkdirSync, readdirSync } from "node:fs";
import path from "node:path";

const dirs = ["http/dashboard"];
for (const dir of dirs) {
  const from = path.join("src", dir);
  const to = path.join("dist", dir);
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) {
    if (/\.(html|js|css)$/.test(name)) cpSync(path.join(from, name), path.join(to, name));
  }
}
