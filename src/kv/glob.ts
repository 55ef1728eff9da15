/**
 * Redis's glob patterns (KEYS, SCAN MATCH): `*`, `?`, `[abc]`, `[^a-z]` and `\x`, matched on
 * bytes (latin1 strings). Iterative with one backtrack point for `*`, so a pattern cannot make it
 * exponential.
 */
export function globMatch(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let star_p = -1;
  let star_t = 0;
  while (t < text.length) {
    const step = p < pattern.length ? matchOne(pattern, p, text.charCodeAt(t)) : -1;
    if (pattern[p] === '*') {
      star_p = p++;
      star_t = t;
    } else if (step > 0) {
      p += step;
      t++;
    } else if (star_p >= 0) {
      p = star_p + 1;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

/** Pattern characters consumed when the token at `p` matches `code`, or -1 if it does not. */
function matchOne(pattern: string, p: number, code: number): number {
  const c = pattern[p];
  if (c === '?') return 1;
  if (c === '\\' && p + 1 < pattern.length) return pattern.charCodeAt(p + 1) === code ? 2 : -1;
  if (c === '[') return matchClass(pattern, p, code);
  return pattern.charCodeAt(p) === code ? 1 : -1;
}

function matchClass(pattern: string, start: number, code: number): number {
  let p = start + 1;
  const negate = pattern[p] === '^';
  if (negate) p++;
  let matched = false;
  while (p < pattern.length && pattern[p] !== ']') {
    if (pattern[p] === '\\' && p + 1 < pattern.length) {
      if (pattern.charCodeAt(p + 1) === code) matched = true;
      p += 2;
    } else if (pattern[p + 1] === '-' && p + 2 < pattern.length && pattern[p + 2] !== ']') {
      let low = pattern.charCodeAt(p);
      let high = pattern.charCodeAt(p + 2);
      if (low > high) [low, high] = [high, low];
      if (code >= low && code <= high) matched = true;
      p += 3;
    } else {
      if (pattern.charCodeAt(p) === code) matched = true;
      p++;
    }
  }
  // An unclosed class ends at the pattern's end, as in Redis.
  const consumed = Math.min(p + 1, pattern.length) - start;
  return matched !== negate ? Math.max(consumed, 1) : -1;
}
