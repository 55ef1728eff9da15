import * as net from 'node:net';

type WriteHook = (this: net.Socket, ...args: unknown[]) => void;

/**
 * Counts the writes every socket in this process hands to libuv while `body`
 * runs, by wrapping net.Socket's internal _write/_writev (restored after). It
 * shows whether many sends were coalesced into one write. Internal methods:
 * a Node upgrade may need this helper changed, in this one place.
 */
export async function countSocketWrites(
  body: () => Promise<void>,
): Promise<{ write_calls: number; writev_calls: number }> {
  const prototype = net.Socket.prototype as unknown as { _write: WriteHook; _writev: WriteHook };
  const original_write = prototype._write;
  const original_writev = prototype._writev;
  const counts = { write_calls: 0, writev_calls: 0 };
  prototype._write = function (this: net.Socket, ...args: unknown[]) {
    counts.write_calls++;
    original_write.apply(this, args);
  };
  prototype._writev = function (this: net.Socket, ...args: unknown[]) {
    counts.writev_calls++;
    original_writev.apply(this, args);
  };
  try {
    await body();
  } finally {
    prototype._write = original_write;
    prototype._writev = original_writev;
  }
  return counts;
}
