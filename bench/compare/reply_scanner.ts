/**
 * Counts complete RESP replies in a byte stream that arrives in arbitrary chunks: simple strings,
 * errors, integers, bulk strings and arrays of them. Nil is Redis's `$-1` or this store's
 * `*1 $3 nil` (see src/resp/reply.ts).
 */
export interface ScanCounts {
  replies: number;
  errors: number;
  nils: number;
}

const CR = 0x0d;
const STORE_NIL = Buffer.from('*1\r\n$3\r\nnil\r\n', 'latin1');
const ARRAY_DEPTH_MAX = 4;

export class ReplyScanner {
  private pending: Buffer = Buffer.alloc(0);

  /** Adds `chunk`; returns what completed with it. */
  feed(chunk: Buffer): ScanCounts {
    const data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const counts: ScanCounts = { replies: 0, errors: 0, nils: 0 };
    let offset = 0;
    for (;;) {
      const end = this.replyEnd(data, offset, 0);
      if (end < 0) break;
      counts.replies += 1;
      const type = data[offset];
      if (type === 0x2d) counts.errors += 1; // '-'
      const nil =
        type === 0x24 ? data[offset + 1] === 0x2d : STORE_NIL.equals(data.subarray(offset, end));
      if (nil) counts.nils += 1;
      offset = end;
    }
    this.pending = data.subarray(offset);
    return counts;
  }

  /** Offset after the reply starting at `start`, or -1 when it is not complete yet. */
  private replyEnd(data: Buffer, start: number, depth: number): number {
    if (start >= data.length) return -1;
    const line_end = data.indexOf(CR, start);
    if (line_end < 0 || line_end + 1 >= data.length) return -1;
    const type = data[start];
    if (type === 0x2b || type === 0x2d || type === 0x3a) return line_end + 2; // '+', '-', ':'
    const length = Number(data.toString('latin1', start + 1, line_end));
    if ((type !== 0x24 && type !== 0x2a) || !Number.isInteger(length)) {
      throw new Error(
        `unexpected reply ${JSON.stringify(data.toString('latin1', start, line_end))}`,
      );
    }
    if (length < 0) return line_end + 2;
    if (type === 0x24) {
      // '$'
      const end = line_end + 2 + length + 2;
      return end <= data.length ? end : -1;
    }
    if (depth >= ARRAY_DEPTH_MAX) throw new Error('reply arrays nested too deeply');
    let end = line_end + 2;
    for (let i = 0; i < length && end >= 0; i++) end = this.replyEnd(data, end, depth + 1);
    return end;
  }
}
