/**
 * Random-access reads of a log file through one reusable window, so that
 * replay reads big chunks instead of one syscall per record and never holds
 * more than max(chunk, largest record) bytes of the file at once.
 */
import { assert } from '../util/assert';
import { StorageIoError } from '../util/errors';
import type { LogFile } from './io';

export class ChunkReader {
  private window: Buffer;
  private window_start = 0;
  private window_bytes = 0;

  constructor(
    private readonly file: LogFile,
    private readonly file_path: string,
    readonly file_bytes: number,
    private readonly chunk_bytes: number,
  ) {
    this.window = Buffer.alloc(0);
  }

  /**
   * Returns at least `length` bytes starting at `offset` (more if the window
   * already holds them, up to the end of the file). The view is valid only
   * until the next call: copy what must outlive it.
   */
  async view(offset: number, length: number): Promise<Buffer> {
    assert(
      offset >= 0 && length >= 0 && offset + length <= this.file_bytes,
      `read [${offset}, +${length}) outside file of ${this.file_bytes} bytes`,
    );
    const window_end = this.window_start + this.window_bytes;
    if (offset < this.window_start || offset + length > window_end) await this.fill(offset, length);
    return this.window.subarray(offset - this.window_start, this.window_bytes);
  }

  private async fill(offset: number, length: number): Promise<void> {
    const want = Math.min(Math.max(length, this.chunk_bytes), this.file_bytes - offset);
    if (this.window.length < want) this.window = Buffer.alloc(Math.max(want, this.chunk_bytes));
    let filled = 0;
    while (filled < want) {
      const got = await this.file.read(this.window, filled, want - filled, offset + filled);
      // The file was measured when replay began and we hold its lock; a short file now is an
      // outside change.
      if (got === 0)
        throw new StorageIoError(
          `${this.file_path}: file shrank while being read (end at byte ${offset + filled})`,
        );
      filled += got;
    }
    this.window_start = offset;
    this.window_bytes = want;
  }
}
