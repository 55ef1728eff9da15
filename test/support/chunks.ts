/**
 * Splits a byte stream at the given cut points (taken modulo length + 1,
 * deduplicated, sorted): the chunk splits streaming decoders must not notice.
 */
export function splitAt(stream: Buffer, cuts: readonly number[]): Buffer[] {
  const sorted = [...new Set(cuts.map((cut) => cut % (stream.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of sorted) {
    chunks.push(stream.subarray(from, cut));
    from = cut;
  }
  chunks.push(stream.subarray(from));
  return chunks;
}
