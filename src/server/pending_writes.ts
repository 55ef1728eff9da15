/**
 * Value bytes of writes this node accepted and has not yet settled, by key. A read's reply is
 * estimated before it runs (the reply budgets charge it then); a pipeline that writes a large value
 * and reads it in the same burst dispatches the reads before the write is applied, so the estimate
 * adds these bytes to the value the node holds.
 */
/**
 * Smaller values are not tracked: the default reply estimate covers them, and the bookkeeping cost
 * (a map update per write) showed in profiles of 100k-SET pipelines.
 */
const TRACKED_VALUE_BYTES_MIN = 1024;

export class PendingWriteBytes {
  private readonly by_key = new Map<string, number>();

  /**
   * Counts a write command's value bytes under its key(s); the returned function uncounts them
   * (null: nothing was counted).
   */
  add(args: readonly Buffer[]): (() => void) | null {
    // No value can reach the threshold when all arguments together stay below it: the usual small
    // SET then costs no strings (the command name lowered, the key) and no arrays.
    let bytes_total = 0;
    for (let i = 1; i < args.length; i++) bytes_total += args[i]?.length ?? 0;
    if (bytes_total < TRACKED_VALUE_BYTES_MIN) return null;
    const charges = valueBytesByKey(args);
    if (charges.length === 0) return null;
    for (const [key, bytes] of charges) this.by_key.set(key, (this.by_key.get(key) ?? 0) + bytes);
    return () => {
      for (const [key, bytes] of charges) {
        const left = (this.by_key.get(key) ?? 0) - bytes;
        if (left > 0) this.by_key.set(key, left);
        else this.by_key.delete(key);
      }
    };
  }

  bytesFor(key: Buffer): number {
    return this.by_key.size === 0 ? 0 : (this.by_key.get(key.toString('latin1')) ?? 0);
  }
}

/**
 * MSET/MSETNX: each key with its value; any other write: its key (the first argument) with every
 * later argument, an upper bound on what it can add to the value (SET, APPEND, SETRANGE, ...).
 */
function valueBytesByKey(args: readonly Buffer[]): [string, number][] {
  const name = args[0]?.toString('latin1').toLowerCase() ?? '';
  const charges: [string, number][] = [];
  if (name === 'mset' || name === 'msetnx') {
    for (let i = 1; i + 1 < args.length; i += 2) {
      const key = args[i];
      const value = args[i + 1];
      if (key !== undefined && value !== undefined && value.length >= TRACKED_VALUE_BYTES_MIN)
        charges.push([key.toString('latin1'), value.length]);
    }
    return charges;
  }
  const key = args[1];
  if (key === undefined) return charges;
  let bytes = 0;
  for (let i = 2; i < args.length; i++) bytes += args[i]?.length ?? 0;
  if (bytes >= TRACKED_VALUE_BYTES_MIN) charges.push([key.toString('latin1'), bytes]);
  return charges;
}
