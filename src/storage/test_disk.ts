/**
 * TESTS ONLY: a StorageIo around the real one for the chaos test's disk
 * faults on real processes (config `test_synced_lengths`, `test_fsync_delay_file`).
 *
 * - Power loss: kill -9 keeps the page cache, so it never loses a write that
 *   was acknowledged before its fdatasync. With `record_synced`, after each
 *   fdatasync of a file the length it made durable is written to
 *   `<file>.synced` (before the storage learns the fsync completed, so nothing
 *   that depends on it can happen first); a test that killed the process may
 *   cut the file back to that length (and keep a torn part of the rest), which
 *   is exactly what a power loss may do.
 * - Slow disk: while `fsync_delay_file` exists, every fdatasync first waits a
 *   delay drawn from the `min_ms max_ms` written in it (re-read at most every
 *   FSYNC_DELAY_REREAD_MS).
 */
import * as fs from 'node:fs';
import { type LogFile, NODE_STORAGE_IO, type StorageIo } from './io';
import { type OpenResult, RaftStorage } from './raft_storage';
import type { SnapshotParserFactory } from './snapshot_store';
import type { DirLock } from './lock';

export const SYNCED_SUFFIX = '.synced';
/** The sidecar holds the synced length as fixed-width decimal, rewritten in place. */
const SYNCED_DIGITS = 16;
const FSYNC_DELAY_REREAD_MS = 100;

export interface TestDiskOptions {
  record_synced: boolean;
  /** null: no fsync delay. */
  fsync_delay_file: string | null;
}

/** Reads a sidecar: the synced length of `file`, or null when none was recorded. */
export function readSyncedLength(file: string): number | null {
  try {
    const text = fs.readFileSync(`${file}${SYNCED_SUFFIX}`, 'latin1').trim();
    return text === '' ? null : Number(text);
  } catch {
    return null;
  }
}

class FsyncDelay {
  private range: [number, number] = [0, 0];
  private read_at_ms = -Infinity;

  constructor(private readonly file: string) {}

  next_ms(): number {
    const now_ms = performance.now();
    if (now_ms - this.read_at_ms >= FSYNC_DELAY_REREAD_MS) {
      this.read_at_ms = now_ms;
      this.range = [0, 0];
      try {
        const numbers = fs.readFileSync(this.file, 'latin1').trim().split(/\s+/).map(Number);
        const low = numbers[0] ?? 0;
        const high = numbers[1] ?? low;
        if (Number.isFinite(low) && Number.isFinite(high) && low >= 0 && high >= low)
          this.range = [low, high];
      } catch {
        // no file: a fast disk
      }
    }
    const [low, high] = this.range;
    // Not seeded: the delay only shapes timing, which a real run does not replay anyway.
    return low + Math.random() * (high - low);
  }
}

class TestLogFile implements LogFile {
  /** End of the bytes written so far: what the next fdatasync makes durable. */
  private written_end: number;
  private sidecar_fd: number | null = null;

  constructor(
    private readonly inner: LogFile,
    private readonly path: string,
    initial_bytes: number,
    private readonly options: TestDiskOptions,
    private readonly delay: FsyncDelay | null,
  ) {
    this.written_end = initial_bytes;
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  read(target: Buffer, target_offset: number, length: number, position: number): Promise<number> {
    return this.inner.read(target, target_offset, length, position);
  }

  async write(data: Buffer, position: number): Promise<void> {
    await this.inner.write(data, position);
    this.written_end = Math.max(this.written_end, position + data.length);
  }

  async datasync(): Promise<void> {
    const delay_ms = this.delay?.next_ms() ?? 0;
    if (delay_ms > 0) await new Promise((resolve) => setTimeout(resolve, delay_ms));
    const durable_end = this.written_end;
    await this.inner.datasync();
    if (this.options.record_synced) this.recordSynced(durable_end);
  }

  async truncate(length: number): Promise<void> {
    await this.inner.truncate(length);
    this.written_end = Math.min(this.written_end, length);
  }

  async close(): Promise<void> {
    if (this.sidecar_fd !== null) fs.closeSync(this.sidecar_fd);
    this.sidecar_fd = null;
    await this.inner.close();
  }

  private recordSynced(length: number): void {
    // Synchronous, in the page cache: a kill -9 right after still leaves it for the test to read.
    this.sidecar_fd ??= fs.openSync(`${this.path}${SYNCED_SUFFIX}`, 'w');
    fs.writeSync(this.sidecar_fd, `${length}`.padStart(SYNCED_DIGITS, ' '), 0, 'latin1');
  }
}

/** Wraps `inner` so that its log files record synced lengths and/or fsync slowly. */
export function testDiskIo(inner: StorageIo, options: TestDiskOptions): StorageIo {
  const delay = options.fsync_delay_file === null ? null : new FsyncDelay(options.fsync_delay_file);
  return {
    ...inner,
    async openLog(path: string): Promise<LogFile> {
      const file = await inner.openLog(path);
      return new TestLogFile(file, path, await file.size(), options, delay);
    },
    async rename(from: string, to: string): Promise<void> {
      await inner.rename(from, to);
      if (!options.record_synced) return;
      // The sidecar follows its file (a compaction or snapshot renames the file into place); an
      // open sidecar descriptor follows the inode.
      await fs.promises.rename(`${from}${SYNCED_SUFFIX}`, `${to}${SYNCED_SUFFIX}`).catch(() => {});
    },
    async unlink(path: string): Promise<void> {
      await inner.unlink(path);
      if (options.record_synced) await fs.promises.rm(`${path}${SYNCED_SUFFIX}`, { force: true });
    },
  };
}

/** Opens the node's storage through the test-only disk hooks. */
export function openWithTestDisk<S = Buffer>(
  dir: string,
  options: TestDiskOptions,
  node_id?: number,
  snapshot_parser?: SnapshotParserFactory<S>,
  held_lock?: DirLock,
): Promise<OpenResult<S>> {
  const storage_options = {
    ...(node_id === undefined ? {} : { node_id }),
    ...(snapshot_parser === undefined ? {} : { snapshot_parser }),
    ...(held_lock === undefined ? {} : { held_lock }),
  };
  return RaftStorage.openWithIo(dir, storage_options, testDiskIo(NODE_STORAGE_IO, options));
}
