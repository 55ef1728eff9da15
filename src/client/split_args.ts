/**
 * Splits a command line into arguments with redis-cli's quoting rules:
 * whitespace separates arguments; "double quotes" understand \" \\ \n \r
 * \t \b \a and \xHH (any byte); 'single quotes' only understand \'. A
 * closing quote must end the argument. Returns null for unbalanced quotes
 * (redis-cli says "Invalid argument(s)").
 */
export function splitCommandLine(line: string): Buffer[] | null {
  const args: Buffer[] = [];
  let i = 0;
  const at = (index: number): string => line.charAt(index);
  for (;;) {
    while (i < line.length && isSpace(at(i))) i += 1;
    if (i >= line.length) return args;
    const bytes: number[] = [];
    const pushText = (text: string): void => {
      for (const byte of Buffer.from(text, 'utf8')) bytes.push(byte);
    };
    let quote: '"' | "'" | null = null;
    for (;;) {
      const c = at(i);
      if (quote === '"') {
        if (i >= line.length) return null;
        if (c === '\\' && at(i + 1) === 'x' && isHex(at(i + 2)) && isHex(at(i + 3))) {
          bytes.push(parseInt(line.slice(i + 2, i + 4), 16));
          i += 4;
          continue;
        }
        if (c === '\\' && i + 1 < line.length) {
          pushText(DOUBLE_QUOTE_ESCAPES[at(i + 1)] ?? at(i + 1));
          i += 2;
          continue;
        }
        if (c === '"') {
          // The closing quote must be followed by a space or the end.
          if (i + 1 < line.length && !isSpace(at(i + 1))) return null;
          i += 1;
          break;
        }
      } else if (quote === "'") {
        if (i >= line.length) return null;
        if (c === '\\' && at(i + 1) === "'") {
          pushText("'");
          i += 2;
          continue;
        }
        if (c === "'") {
          if (i + 1 < line.length && !isSpace(at(i + 1))) return null;
          i += 1;
          break;
        }
      } else {
        if (i >= line.length || isSpace(c)) break;
        if (c === '"' || c === "'") {
          quote = c;
          i += 1;
          continue;
        }
      }
      // Copy one whole code point so that surrogate pairs stay intact.
      const code_point = line.codePointAt(i) ?? 0;
      const text = String.fromCodePoint(code_point);
      pushText(text);
      i += text.length;
    }
    args.push(Buffer.from(bytes));
  }
}

const DOUBLE_QUOTE_ESCAPES: Readonly<Record<string, string>> = { n: '\n', r: '\r', t: '\t', b: '\b', a: '\x07' };

function isSpace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f';
}

function isHex(c: string): boolean {
  return /^[0-9a-fA-F]$/.test(c);
}
