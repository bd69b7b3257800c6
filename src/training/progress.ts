/** A one-line progress bar on stderr (redrawn in place on a terminal, a line per 10% otherwise). */
export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr) {
  const width = 30;
  let lastDecile = -1;
  let lastDraw = 0;
  return {
    update(fraction: number, note = "", force = false): void {
      const f = Math.min(1, Math.max(0, fraction));
      const line = `${label.padEnd(10)} [${"#".repeat(Math.round(f * width)).padEnd(width, ".")}] ${(f * 100).toFixed(0).padStart(3)}% ${note}`;
      if (stream.isTTY) {
        const now = Date.now();
        if (now - lastDraw < 100 && !force) return;
        lastDraw = now;
        stream.write(`\r${line}\x1b[K`);
      } else {
        const decile = Math.floor(f * 10);
        if (decile === lastDecile && !force) return;
        lastDecile = decile;
        stream.write(`${line}\n`);
      }
    },
    done(note = ""): void {
      this.update(1, note, true);
      if (stream.isTTY) stream.write("\n");
    },
  };
}
