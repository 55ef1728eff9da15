/**
 * A StorageIo for tests that wraps the real one and records every write and
 * fsync, knows which bytes a completed fsync made durable, and can hold an
 * fsync open or fail writes/fsyncs on demand.
 */
import { NODE_STORAGE_IO, type LogFile, type StorageIo } from '../../src/storage/io';
import type { DirLock } from '../../src/storage/lock';

export class SpyIo implements StorageIo {
  readonly events: string[] = [];
  /** End of the furthest byte written. */
  written_bytes = 0;
  /** Bytes covered by the last completed fsync. */
  durable_bytes = 0;
  datasyncs_started = 0;
  /** While set, a started fsync waits until release() is called. */
  hold_datasync = false;
  /**
   * When false the real fdatasync is skipped (the durability bookkeeping stays the same): faster
   * property runs.
   */
  real_datasync = true;
  fail_next_write: Error | null = null;
  fail_next_datasync: Error | null = null;
  private held: Array<() => void> = [];

  get held_count(): number {
    return this.held.length;
  }

  release(): void {
    for (const resume of this.held.splice(0)) resume();
  }

  async openLog(path: string): Promise<LogFile> {
    const inner = await NODE_STORAGE_IO.openLog(path);
    this.written_bytes = await inner.size();
    this.durable_bytes = this.written_bytes;
    return {
      size: () => inner.size(),
      read: (target, target_offset, length, position) =>
        inner.read(target, target_offset, length, position),
      write: async (data, position) => {
        this.events.push(`write ${position}+${data.length}`);
        const failure = this.fail_next_write;
        if (failure !== null) {
          this.fail_next_write = null;
          // A failing write may still have put part of the data on disk.
          await inner.write(data.subarray(0, Math.floor(data.length / 2)), position);
          throw failure;
        }
        await inner.write(data, position);
        this.written_bytes = Math.max(this.written_bytes, position + data.length);
      },
      datasync: async () => {
        const covers = this.written_bytes;
        this.datasyncs_started += 1;
        this.events.push('datasync start');
        if (this.hold_datasync) await new Promise<void>((resume) => this.held.push(resume));
        const failure = this.fail_next_datasync;
        if (failure !== null) {
          this.fail_next_datasync = null;
          this.events.push('datasync failed');
          throw failure;
        }
        if (this.real_datasync) await inner.datasync();
        this.durable_bytes = Math.max(this.durable_bytes, covers);
        this.events.push('datasync end');
      },
      truncate: async (length) => {
        await inner.truncate(length);
        this.written_bytes = length;
        this.durable_bytes = Math.min(this.durable_bytes, length);
      },
      close: () => inner.close(),
    };
  }

  syncDirectory(path: string): Promise<void> {
    return NODE_STORAGE_IO.syncDirectory(path);
  }

  makeDirectory(path: string): Promise<string | undefined> {
    return NODE_STORAGE_IO.makeDirectory(path);
  }

  lockDirectory(path: string): Promise<DirLock> {
    return NODE_STORAGE_IO.lockDirectory(path);
  }

  rename(from: string, to: string): Promise<void> {
    return NODE_STORAGE_IO.rename(from, to);
  }

  unlink(path: string): Promise<void> {
    return NODE_STORAGE_IO.unlink(path);
  }

  listDirectory(path: string): Promise<string[]> {
    return NODE_STORAGE_IO.listDirectory(path);
  }
}
