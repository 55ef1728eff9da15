/**
 * An in-memory disk for RaftStorage (a StorageIo) that fails the way disks and
 * crashes fail, deterministic from a seed. The model follows TigerBeetle's
 * src/testing/storage.zig: asynchronous operations with random latency, and
 * faults injected at a crash, at fsync and at rest.
 *
 * Each file has two images:
 *   current  what reads see (the page cache): every completed write and truncate;
 *   durable  what survives a crash: only what a completed datasync covered.
 * The writes and truncates since the last good datasync are kept in order
 * (`unsynced`), with the writes still in flight after them.
 *
 * Faults:
 *   - crash(): power loss. Every file's current image becomes its durable one
 *     plus a random prefix of its unsynced operations (a crash may happen to
 *     have flushed some of them, in order), and the operation after that prefix,
 *     if it is a write, may be torn: a whole number of its sectors persisted as
 *     written, the next sector zeros, garbage or absent, nothing after. A file
 *     created since the last syncDirectory of its directory may vanish, unless a
 *     kept rename put it over an existing name (then that name holds it).
 *     Operations in flight never complete: their promises stay pending forever,
 *     as in a dead process (the simulator discards the old incarnation). Every
 *     lock is released.
 *   - datasync failure: a datasync rejects with an EIO error; what it should have
 *     covered stays unsynced (it may or may not survive a crash).
 *   - write failure: a write rejects with EIO after a whole-sector prefix of it
 *     reached the file.
 *   - killProcess(): the process dies, the machine does not: the page cache
 *     (everything written) survives, a prefix of the writes in flight completes.
 *   - corruption at rest: corruptDurableRecord() flips a byte of a chosen WAL
 *     record; walRecords() finds the record boundaries.
 *   - slow operations: any operation may take a latency spike.
 * Never modelled: sectors of one write persisted out of order, or a synced
 * write lost; the WAL documents both as limits (raft_storage.ts). The test-only
 * switch bug_datasync_not_durable loses synced writes on purpose, to show that
 * a durability check catches it.
 *
 * Usage: one FaultyDisk per simulated node (it outlives restarts); one
 * `disk.io(schedule)` per process incarnation, passed to RaftStorage.openWithIo.
 * After crash() or killProcess() every earlier incarnation is dead: its
 * operations never settle and never touch the disk. `options` may be changed
 * between operations (e.g. faults off while a scenario sets up).
 */
import * as path from 'node:path';
import { RECORD_HEADER_BYTES, recordCrcMatches } from '../../src/storage/frame';
import type { LogFile, StorageIo } from '../../src/storage/io';
import { type DirLock, LOCK_FILE_NAME } from '../../src/storage/lock';
import { assert } from '../../src/util/assert';
import { StorageLockedError } from '../../src/util/errors';
import type { Random } from '../../src/util/prng';

/** Runs `run` after `delay_ms` of (virtual) time: the simulator's clock. */
export type Schedule = (delay_ms: number, run: () => void) => void;

export interface LatencyRange {
  min_ms: number;
  max_ms: number;
}

export interface FaultyDiskOptions {
  /** Granularity of a torn write. */
  sector_bytes: number;
  read_latency: LatencyRange;
  write_latency: LatencyRange;
  datasync_latency: LatencyRange;
  /** open, size, truncate, close, directory operations and locks. */
  metadata_latency: LatencyRange;
  /** Chance that an operation takes an extra slow_latency (a slow disk). */
  slow_probability: number;
  slow_latency: LatencyRange;
  /** Chance that a crash persists a non-empty prefix of the unsynced operations of a file. */
  crash_keep_unsynced_probability: number;
  /** Chance that the write after the persisted prefix is torn into the file. */
  torn_write_probability: number;
  /** Chance that a crash loses a file whose directory entry was never synced. */
  crash_lose_new_file_probability: number;
  /** Chance that a datasync fails with EIO. */
  datasync_failure_probability: number;
  /** Chance that a write fails with EIO after a random whole-sector prefix of it was written. */
  write_failure_probability: number;
  /** Test-only bug: a datasync reports success but makes nothing durable. */
  bug_datasync_not_durable: boolean;
}

export const FAULTY_DISK_DEFAULTS: FaultyDiskOptions = {
  sector_bytes: 512,
  read_latency: { min_ms: 0, max_ms: 2 },
  write_latency: { min_ms: 0, max_ms: 3 },
  datasync_latency: { min_ms: 2, max_ms: 10 },
  metadata_latency: { min_ms: 0, max_ms: 1 },
  slow_probability: 0,
  slow_latency: { min_ms: 50, max_ms: 500 },
  crash_keep_unsynced_probability: 0.5,
  torn_write_probability: 0.5,
  crash_lose_new_file_probability: 0.5,
  datasync_failure_probability: 0,
  write_failure_probability: 0,
  bug_datasync_not_durable: false,
};

type Operation =
  | { kind: 'write'; position: number; data: Buffer }
  | { kind: 'truncate'; length: number };

interface DiskFile {
  durable: Buffer;
  current: Buffer;
  /** Completed writes and truncates not yet covered by a good datasync, in order. */
  unsynced: Operation[];
  /** Writes issued and not yet completed, in issue order. */
  in_flight: Operation[];
  /** False until a syncDirectory of the parent made the file's name durable. */
  entry_durable: boolean;
}

/** A WAL record's place in a file image, from its header (see raft_storage.ts). */
export interface WalRecordSpan {
  offset: number;
  bytes: number;
  /** 1 = file header, 2 = save. */
  type: number;
}

export interface CrashReport {
  /** Per file: bytes of the current image before the crash and of the image after it. */
  files: Array<{ path: string; bytes_before: number; bytes_after: number; torn: boolean }>;
  lost_files: string[];
}

export class FaultyDisk {
  readonly options: FaultyDiskOptions;
  private readonly files = new Map<string, DiskFile>();
  private readonly directories = new Set<string>(['/']);
  /**
   * Renames and unlinks not yet made durable by a syncDirectory, in order, each with how to undo
   * it: a crash keeps a random prefix of them and undoes the rest, newest first.
   */
  private unsynced_names: Array<{ directory: string; undo: () => void; keep?: () => void }> = [];
  /** Locked directory -> the incarnation holding it. */
  private readonly locks = new Map<string, number>();
  /** Incarnations numbered from 1; those below `first_live` are dead. */
  private incarnations = 0;
  private first_live = 1;

  constructor(
    private readonly random: Random,
    options: Partial<FaultyDiskOptions> = {},
  ) {
    this.options = { ...FAULTY_DISK_DEFAULTS, ...options };
    assert(this.options.sector_bytes > 0, 'sector_bytes must be positive');
  }

  /** A StorageIo for a new process incarnation whose operations complete through `schedule`. */
  io(schedule: Schedule): StorageIo {
    this.incarnations += 1;
    return new FaultyIo(this, this.incarnations, schedule);
  }

  /** Power loss: see the file comment. Every incarnation so far is dead afterwards. */
  crash(): CrashReport {
    this.first_live = this.incarnations + 1;
    this.locks.clear();
    const report: CrashReport = { files: [], lost_files: [] };
    this.crashNames();
    for (const [file_path, file] of [...this.files]) {
      if (!file.entry_durable && this.chance(this.options.crash_lose_new_file_probability)) {
        this.files.delete(file_path);
        report.lost_files.push(file_path);
        continue;
      }
      const bytes_before = file.current.length;
      const torn = this.crashFile(file);
      report.files.push({ path: file_path, bytes_before, bytes_after: file.current.length, torn });
    }
    return report;
  }

  /**
   * The process dies but the machine does not: every incarnation so far is dead and its locks are
   * released, while the page cache survives (current images and their unsynced operations stay, to
   * be flushed or lost at a later crash()). Of the writes in flight, a random prefix completes.
   */
  killProcess(): void {
    this.first_live = this.incarnations + 1;
    this.locks.clear();
    for (const file of this.files.values()) {
      const completed = this.random.int(file.in_flight.length + 1);
      for (const operation of file.in_flight.slice(0, completed)) {
        file.current = applyOperation(file.current, operation);
        file.unsynced.push(operation);
      }
      file.in_flight = [];
    }
  }

  /**
   * The spans of the intact records at the start of a file image: header lengths walked from
   * offset 0 up to the first record whose checksum does not match (a torn tail's remains).
   */
  walRecords(file_path: string, image: 'durable' | 'current' = 'durable'): WalRecordSpan[] {
    const bytes = this.fileOf(file_path)[image];
    const spans: WalRecordSpan[] = [];
    let offset = 0;
    while (offset + RECORD_HEADER_BYTES <= bytes.length) {
      const record_bytes = RECORD_HEADER_BYTES + bytes.readUInt32LE(offset + 8);
      if (offset + record_bytes > bytes.length) break;
      if (!recordCrcMatches(bytes.subarray(offset, offset + record_bytes))) break;
      spans.push({ offset, bytes: record_bytes, type: bytes.readUInt8(offset + 12) });
      offset += record_bytes;
    }
    return spans;
  }

  /**
   * Corruption at rest: flips bits of one random byte of durable record `record_index` (in both
   * images). The last durable record is refused unless `allow_last`: damage there is
   * indistinguishable from a torn write, and the WAL truncates it by design. Returns the offset.
   */
  corruptDurableRecord(file_path: string, record_index: number, allow_last = false): number {
    const spans = this.walRecords(file_path, 'durable');
    const span = spans[record_index];
    assert(span !== undefined, `${file_path} has ${spans.length} durable records`);
    assert(
      allow_last || record_index < spans.length - 1,
      `record ${record_index} is the last durable record of ${file_path}`,
    );
    const offset = span.offset + this.random.int(span.bytes);
    this.corruptDurable(file_path, offset);
    return offset;
  }

  /**
   * Corrupts a random durable record that is not the last; null if the file does not exist or has
   * fewer than two durable records.
   */
  corruptRandomDurableRecord(file_path: string): { record_index: number; offset: number } | null {
    if (!this.files.has(file_path)) return null;
    const count = this.walRecords(file_path, 'durable').length;
    if (count < 2) return null;
    const record_index = this.random.int(count - 1);
    return { record_index, offset: this.corruptDurableRecord(file_path, record_index) };
  }

  /** Flips bits of the durable byte at `offset` (and of the cached byte, if the file has it). */
  corruptDurable(file_path: string, offset: number): void {
    const file = this.fileOf(file_path);
    const old = file.durable[offset];
    assert(old !== undefined, `byte ${offset} is beyond the durable end of ${file_path}`);
    const mask = 1 + this.random.int(255);
    file.durable[offset] = old ^ mask;
    const cached = file.current[offset];
    if (cached !== undefined) file.current[offset] = cached ^ mask;
  }

  /**
   * Puts a file on the disk as if written and synced long ago (durable, its directory entry too):
   * scripted scenarios start from logs that earlier, imagined history left.
   */
  installFile(file_path: string, bytes: Buffer): void {
    this.makeDirectory(path.dirname(file_path));
    this.files.set(file_path, {
      durable: copyImage(bytes),
      current: copyImage(bytes),
      unsynced: [],
      in_flight: [],
      entry_durable: true,
    });
  }

  /** The paths of the files on the disk now. */
  paths(): string[] {
    return [...this.files.keys()];
  }

  /** A copy of a file image, or null if the file does not exist. */
  image(file_path: string, which: 'durable' | 'current'): Buffer | null {
    const file = this.files.get(file_path);
    return file === undefined ? null : Buffer.from(file[which]);
  }

  // The methods below serve FaultyIo.

  isLive(incarnation: number): boolean {
    return incarnation >= this.first_live;
  }

  chance(probability: number): boolean {
    return probability > 0 && this.random.float() < probability;
  }

  latency(range: LatencyRange): number {
    let delay_ms = drawLatency(this.random, range);
    if (this.chance(this.options.slow_probability))
      delay_ms += drawLatency(this.random, this.options.slow_latency);
    return delay_ms;
  }

  fileOf(file_path: string): DiskFile {
    const file = this.files.get(file_path);
    assert(file !== undefined, `no file ${file_path} on the faulty disk`);
    return file;
  }

  openFile(file_path: string): DiskFile | 'ENOENT' {
    const existing = this.files.get(file_path);
    if (existing !== undefined) return existing;
    if (!this.directories.has(path.dirname(file_path))) return 'ENOENT';
    const file: DiskFile = {
      durable: Buffer.alloc(0),
      current: Buffer.alloc(0),
      unsynced: [],
      in_flight: [],
      entry_durable: false,
    };
    this.files.set(file_path, file);
    return file;
  }

  makeDirectory(directory: string): string | undefined {
    const missing: string[] = [];
    for (let at = directory; !this.directories.has(at); at = path.dirname(at)) missing.push(at);
    for (const created of [...missing].reverse()) this.directories.add(created);
    return missing[missing.length - 1];
  }

  syncDirectory(directory: string): void {
    for (const [file_path, file] of this.files)
      if (path.dirname(file_path) === directory) file.entry_durable = true;
    this.unsynced_names = this.unsynced_names.filter((op) => op.directory !== directory);
  }

  rename(from: string, to: string): void {
    const file = this.files.get(from);
    if (file === undefined) throw errnoError('ENOENT', `rename '${from}'`);
    const replaced = this.files.get(to);
    this.files.delete(from);
    this.files.set(to, file);
    this.unsynced_names.push({
      directory: path.dirname(to),
      undo: () => {
        this.files.set(from, file);
        if (replaced === undefined) this.files.delete(to);
        else this.files.set(to, replaced);
      },
      // Renamed over a name that was there: a file system's journal makes `to` name the old file
      // or the new one after a crash, never neither (the atomic replace every WAL relies on).
      keep: () => {
        if (replaced !== undefined) file.entry_durable = true;
      },
    });
  }

  unlink(file_path: string): void {
    const file = this.files.get(file_path);
    if (file === undefined) return;
    this.files.delete(file_path);
    this.unsynced_names.push({
      directory: path.dirname(file_path),
      undo: () => this.files.set(file_path, file),
    });
  }

  listDirectory(directory: string): string[] {
    if (!this.directories.has(directory)) throw errnoError('ENOENT', `scandir '${directory}'`);
    const names: string[] = [];
    for (const file_path of this.files.keys())
      if (path.dirname(file_path) === directory) names.push(path.basename(file_path));
    return names.sort();
  }

  /** A crash keeps a random prefix of the unsynced renames and unlinks and undoes the rest. */
  private crashNames(): void {
    const ops = this.unsynced_names;
    this.unsynced_names = [];
    let kept = 0;
    if (ops.length > 0 && this.chance(this.options.crash_keep_unsynced_probability))
      kept = this.random.int(ops.length + 1);
    for (let i = ops.length - 1; i >= kept; i--) ops[i]!.undo();
    for (let i = 0; i < kept; i++) ops[i]!.keep?.();
  }

  lock(directory: string, incarnation: number): void {
    const holder = this.locks.get(directory);
    if (holder !== undefined && this.isLive(holder)) {
      throw new StorageLockedError(
        `data directory ${directory} is in use by incarnation ${holder} (faulty disk)`,
      );
    }
    this.locks.set(directory, incarnation);
  }

  unlock(directory: string, incarnation: number): void {
    if (this.locks.get(directory) === incarnation) this.locks.delete(directory);
  }

  /** A random sector boundary inside the write [position, +bytes), or its start. */
  sectorCut(position: number, bytes: number): number {
    const sector = this.options.sector_bytes;
    const boundaries: number[] = [position];
    for (let at = (Math.floor(position / sector) + 1) * sector; at < position + bytes; at += sector)
      boundaries.push(at);
    return boundaries[this.random.int(boundaries.length)] ?? position;
  }

  /** Applies what a crash keeps of the file's unsynced operations; true if a write was torn. */
  private crashFile(file: DiskFile): boolean {
    const candidates = file.unsynced.concat(file.in_flight);
    let image: Buffer = copyImage(file.durable);
    let kept = 0;
    if (candidates.length > 0 && this.chance(this.options.crash_keep_unsynced_probability))
      kept = 1 + this.random.int(candidates.length);
    for (const operation of candidates.slice(0, kept)) image = applyOperation(image, operation);
    const next = candidates[kept];
    let torn = false;
    if (next?.kind === 'write' && this.chance(this.options.torn_write_probability)) {
      image = this.tear(image, next.position, next.data);
      torn = true;
    }
    file.durable = image;
    file.current = copyImage(image);
    file.unsynced = [];
    file.in_flight = [];
    file.entry_durable = true;
    return torn;
  }

  /**
   * The image after a write torn at a sector boundary: whole sectors of it persisted, then one
   * sector of zeros, garbage or nothing.
   */
  private tear(image: Buffer, position: number, data: Buffer): Buffer {
    const sector = this.options.sector_bytes;
    const end = position + data.length;
    const cut = this.sectorCut(position, data.length);
    let torn: Buffer = applyOperation(image, {
      kind: 'write',
      position,
      data: data.subarray(0, cut - position),
    });
    const damaged_end = Math.min(end, (Math.floor(cut / sector) + 1) * sector);
    const damage = this.random.int(3);
    if (damage === 0 || damaged_end <= cut) return torn;
    const filler = Buffer.alloc(damaged_end - cut);
    if (damage === 2) for (let i = 0; i < filler.length; i += 1) filler[i] = this.random.int(256);
    torn = applyOperation(torn, { kind: 'write', position: cut, data: filler });
    return torn;
  }
}

/** One process incarnation's view of a FaultyDisk. */
class FaultyIo implements StorageIo {
  constructor(
    private readonly disk: FaultyDisk,
    private readonly incarnation: number,
    private readonly schedule: Schedule,
  ) {}

  /**
   * Runs `operation` after a latency drawn from `range`, settling the promise with its outcome;
   * never settles if this incarnation is dead by then.
   */
  complete<T>(range: LatencyRange, operation: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (!this.disk.isLive(this.incarnation)) return;
      this.schedule(this.disk.latency(range), () => {
        if (!this.disk.isLive(this.incarnation)) return;
        let result: T;
        try {
          result = operation();
        } catch (error) {
          reject(error);
          return;
        }
        resolve(result);
      });
    });
  }

  isLive(): boolean {
    return this.disk.isLive(this.incarnation);
  }

  openLog(file_path: string): Promise<LogFile> {
    return this.complete(this.disk.options.metadata_latency, () => {
      const file = this.disk.openFile(file_path);
      if (file === 'ENOENT') throw errnoError('ENOENT', `open '${file_path}'`);
      return new FaultyLogFile(this, file, this.disk.options);
    });
  }

  syncDirectory(directory: string): Promise<void> {
    return this.complete(this.disk.options.metadata_latency, () =>
      this.disk.syncDirectory(directory),
    );
  }

  makeDirectory(directory: string): Promise<string | undefined> {
    return this.complete(this.disk.options.metadata_latency, () =>
      this.disk.makeDirectory(directory),
    );
  }

  rename(from: string, to: string): Promise<void> {
    return this.complete(this.disk.options.metadata_latency, () => this.disk.rename(from, to));
  }

  unlink(file_path: string): Promise<void> {
    return this.complete(this.disk.options.metadata_latency, () => this.disk.unlink(file_path));
  }

  listDirectory(directory: string): Promise<string[]> {
    return this.complete(this.disk.options.metadata_latency, () =>
      this.disk.listDirectory(directory),
    );
  }

  lockDirectory(directory: string): Promise<DirLock> {
    const { metadata_latency } = this.disk.options;
    return this.complete(metadata_latency, () => {
      this.disk.lock(directory, this.incarnation);
      return {
        lock_path: path.join(directory, LOCK_FILE_NAME),
        release: () =>
          this.complete(metadata_latency, () => this.disk.unlock(directory, this.incarnation)),
      };
    });
  }

  chance(probability: number): boolean {
    return this.disk.chance(probability);
  }

  /** The part of a failing write that reached the file: a whole number of its sectors. */
  partialWrite(operation: Operation & { kind: 'write' }): Operation {
    const cut = this.disk.sectorCut(operation.position, operation.data.length);
    const data = operation.data.subarray(0, cut - operation.position);
    return { kind: 'write', position: operation.position, data };
  }
}

class FaultyLogFile implements LogFile {
  private closed = false;

  constructor(
    private readonly io: FaultyIo,
    private readonly file: DiskFile,
    private readonly options: FaultyDiskOptions,
  ) {}

  size(): Promise<number> {
    return this.io.complete(this.options.metadata_latency, () => {
      this.checkOpen();
      return this.file.current.length;
    });
  }

  read(target: Buffer, target_offset: number, length: number, position: number): Promise<number> {
    return this.io.complete(this.options.read_latency, () => {
      this.checkOpen();
      const source = this.file.current;
      const end = Math.min(position + length, source.length);
      if (end <= position) return 0;
      return source.copy(target, target_offset, position, end);
    });
  }

  write(data: Buffer, position: number): Promise<void> {
    // Copied now: the caller may reuse its buffer, and a crash may persist this write in flight.
    const operation = { kind: 'write' as const, position, data: Buffer.from(data) };
    if (this.io.isLive() && !this.closed) this.file.in_flight.push(operation);
    return this.io.complete(this.options.write_latency, () => {
      this.checkOpen();
      const index = this.file.in_flight.indexOf(operation);
      assert(index >= 0, 'a completing write is in flight');
      this.file.in_flight.splice(index, 1);
      const failed = this.io.chance(this.options.write_failure_probability);
      const written = failed ? this.io.partialWrite(operation) : operation;
      this.file.current = applyOperation(this.file.current, written);
      this.file.unsynced.push(written);
      if (failed) throw errnoError('EIO', 'write (simulated device error)');
    });
  }

  datasync(): Promise<void> {
    const covered = this.file.unsynced.slice();
    return this.io.complete(this.options.datasync_latency, () => {
      this.checkOpen();
      if (this.io.chance(this.options.datasync_failure_probability))
        throw errnoError('EIO', 'fdatasync (simulated device error)');
      if (this.options.bug_datasync_not_durable) return;
      for (const operation of covered) {
        // A crash since the snapshot replaced the list; a dead incarnation never gets here.
        assert(this.file.unsynced[0] === operation, 'datasync covers the oldest unsynced writes');
        this.file.unsynced.shift();
        this.file.durable = applyOperation(this.file.durable, operation);
      }
    });
  }

  truncate(length: number): Promise<void> {
    return this.io.complete(this.options.metadata_latency, () => {
      this.checkOpen();
      const operation: Operation = { kind: 'truncate', length };
      this.file.current = applyOperation(this.file.current, operation);
      this.file.unsynced.push(operation);
    });
  }

  close(): Promise<void> {
    return this.io.complete(this.options.metadata_latency, () => {
      this.checkOpen();
      this.closed = true;
    });
  }

  private checkOpen(): void {
    if (this.closed) throw errnoError('EBADF', 'operation on a closed file');
  }
}

/**
 * The image after one write (zero-filling any gap) or truncate (zero-extending if longer). Images
 * grow in place within their own spare capacity, so appending is amortised O(bytes appended).
 */
function applyOperation(image: Buffer, operation: Operation): Buffer {
  if (operation.kind === 'truncate') return resized(image, operation.length);
  const end = operation.position + operation.data.length;
  const result = resized(image, Math.max(image.length, end));
  operation.data.copy(result, operation.position);
  return result;
}

/** Backing stores allocated here for images: only these may be grown into in place. */
const image_backings = new WeakSet<ArrayBufferLike>();

function resized(image: Buffer, length: number): Buffer {
  if (length <= image.length) return image.subarray(0, length);
  if (image_backings.has(image.buffer) && image.byteOffset + length <= image.buffer.byteLength) {
    const grown = Buffer.from(image.buffer, image.byteOffset, length);
    grown.fill(0, image.length);
    return grown;
  }
  const grown = Buffer.alloc(Math.max(length, 2 * image.length, 4096));
  image_backings.add(grown.buffer);
  image.copy(grown);
  return grown.subarray(0, length);
}

/** A copy sharing no memory with `image` (so that growing either never touches the other). */
function copyImage(image: Buffer): Buffer {
  const copy = resized(Buffer.alloc(0), image.length);
  image.copy(copy);
  return copy;
}

function drawLatency(random: Random, range: LatencyRange): number {
  assert(
    0 <= range.min_ms && range.min_ms <= range.max_ms,
    `bad latency range ${JSON.stringify(range)}`,
  );
  return range.min_ms + random.int(range.max_ms - range.min_ms + 1);
}

function errnoError(code: string, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}
