import type { Readable } from 'node:stream';
import { LimitExceededError } from '../util/errors';

/**
 * Yields the lines of a byte stream (LF or CRLF endings; a last line without
 * one counts). Reads the next chunk only when the consumer asks for the next
 * line, so a fast producer cannot fill memory; a line longer than
 * line_bytes_max is a LimitExceededError.
 */
export async function* readLines(input: Readable, line_bytes_max: number): AsyncGenerator<string> {
  let partial: Buffer[] = [];
  let partial_bytes = 0;
  const finish = (tail: Buffer): string => {
    const line = partial.length === 0 ? tail : Buffer.concat([...partial, tail]);
    partial = [];
    partial_bytes = 0;
    const end = line.length > 0 && line[line.length - 1] === 0x0d ? line.length - 1 : line.length;
    return line.toString('utf8', 0, end);
  };
  const tooLong = (): LimitExceededError =>
    new LimitExceededError(
      'kvcli_line_bytes_max',
      `input line longer than ${line_bytes_max} bytes`,
    );
  for await (const data of input) {
    const chunk = typeof data === 'string' ? Buffer.from(data) : (data as Buffer);
    let start = 0;
    for (
      let newline = chunk.indexOf(0x0a, start);
      newline !== -1;
      newline = chunk.indexOf(0x0a, start)
    ) {
      if (partial_bytes + (newline - start) > line_bytes_max + 1) throw tooLong();
      yield finish(chunk.subarray(start, newline));
      start = newline + 1;
    }
    if (start < chunk.length) {
      partial.push(chunk.subarray(start));
      partial_bytes += chunk.length - start;
      if (partial_bytes > line_bytes_max + 1) throw tooLong();
    }
  }
  if (partial_bytes > 0) yield finish(Buffer.alloc(0));
}
