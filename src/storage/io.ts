/**
 * The few file operations the write-ahead log needs, behind an interface so
 * that tests can observe (or delay, or fail) writes and fsyncs. Internal to
 * src/storage: the rest of the system only sees RaftStorage.
 */
import * as fs from 'node:fs';
import { acquireDirLock, type DirLock } from './lock';

export interface LogFile {
  size(): Promise<number>;
  /**
   * Reads up to `length` bytes at file `position` into `target` at `target_offset`; returns the
   * bytes read.
   */
  read(target: Buffer, target_offset: number, length: number, position: number): Promise<number>;
  /** Writes all of `data` at file `position`. */
  write(data: Buffer, position: number): Promise<void>;
  /** fdatasync: data and the size are on stable storage when this resolves. */
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
  /**
   * Optional fast path for the WAL's batches: writes `chunks` one after another from `position`
   * at once (a small write only copies into the page cache) and, with `sync`, fdatasyncs on the
   * thread pool; `done` once durable or failed. One thread-pool job and no Promise per batch,
   * where write() then datasync() take two jobs. Files without it get those two calls.
   */
  appendAndSync?(
    chunks: readonly Buffer[],
    position: number,
    sync: boolean,
    done: (error: Error | null) => void,
  ): void;
}

export interface StorageIo {
  /** Opens the file for reading and positioned writing, creating it if missing. */
  openLog(path: string): Promise<LogFile>;
  /** fsyncs a directory so that entries created in it survive a crash. */
  syncDirectory(path: string): Promise<void>;
  /**
   * Creates the directory and any missing parents (mkdir -p); returns the first directory it
   * created, or undefined if the directory already existed (as fs.mkdir with recursive does).
   */
  makeDirectory(path: string): Promise<string | undefined>;
  /** Takes the exclusive lock on a data directory (see lock.ts); StorageLockedError if held. */
  lockDirectory(path: string): Promise<DirLock>;
  /**
   * Atomically replaces `to` by `from` (rename(2)); durable only once the directory is synced.
   */
  rename(from: string, to: string): Promise<void>;
  /** Removes a file (durable once the directory is synced); missing files are not an error. */
  unlink(path: string): Promise<void>;
  /** Names of the entries in a directory. */
  listDirectory(path: string): Promise<string[]>;
}

class NodeLogFile implements LogFile {
  constructor(private readonly handle: fs.promises.FileHandle) {}

  async size(): Promise<number> {
    return (await this.handle.stat()).size;
  }

  async read(
    target: Buffer,
    target_offset: number,
    length: number,
    position: number,
  ): Promise<number> {
    const { bytesRead } = await this.handle.read(target, target_offset, length, position);
    return bytesRead;
  }

  async write(data: Buffer, position: number): Promise<void> {
    let written = 0;
    while (written < data.length) {
      const { bytesWritten } = await this.handle.write(
        data,
        written,
        data.length - written,
        position + written,
      );
      written += bytesWritten;
    }
  }

  datasync(): Promise<void> {
    return this.handle.datasync();
  }

  appendAndSync(
    chunks: readonly Buffer[],
    position: number,
    sync: boolean,
    done: (error: Error | null) => void,
  ): void {
    const fd = this.handle.fd;
    let at = position;
    try {
      for (const chunk of chunks) {
        let written = 0;
        while (written < chunk.length)
          written += fs.writeSync(fd, chunk, written, chunk.length - written, at + written);
        at += chunk.length;
      }
    } catch (error) {
      // Asynchronously, as the callers of a failed write expect.
      queueMicrotask(() => done(error instanceof Error ? error : new Error(String(error))));
      return;
    }
    if (!sync) {
      queueMicrotask(() => done(null));
      return;
    }
    fs.fdatasync(fd, (error) => done(error));
  }

  truncate(length: number): Promise<void> {
    return this.handle.truncate(length);
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

export const NODE_STORAGE_IO: StorageIo = {
  async openLog(path: string): Promise<LogFile> {
    // Not 'a+': with O_APPEND Linux ignores the position of pwrite, and we write at explicit
    // offsets.
    const handle = await fs.promises.open(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    return new NodeLogFile(handle);
  },

  async syncDirectory(path: string): Promise<void> {
    const handle = await fs.promises.open(path, fs.constants.O_RDONLY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },

  makeDirectory(path: string): Promise<string | undefined> {
    return fs.promises.mkdir(path, { recursive: true });
  },

  lockDirectory(path: string): Promise<DirLock> {
    return acquireDirLock(path);
  },

  rename(from: string, to: string): Promise<void> {
    return fs.promises.rename(from, to);
  },

  async unlink(path: string): Promise<void> {
    await fs.promises.rm(path, { force: true });
  },

  listDirectory(path: string): Promise<string[]> {
    return fs.promises.readdir(path);
  },
};
