/**
 * True when the JSON text nests arrays/objects deeper than `max`. Scans the raw text before it
 * is parsed (no recursion, no allocation), so a 1 MB `[[[[…` costs one pass and is refused
 * before it becomes a million objects. Brackets inside strings do not count.
 */
export function jsonTooDeep(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}
