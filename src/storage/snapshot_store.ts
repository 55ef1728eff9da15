/**
 * Snapshot files: the state machine's bytes plus the Raft metadata a node restarts from (the last
 * index and term the snapshot covers, and the voters). The WAL before a snapshot may be dropped
 * only once the snapshot is durable, so writing follows the usual recipe: a temporary file,
 * written and fdatasync'd, renamed over its final name, then the directory fsync'd.
 *
 * ## File name
 *   snapshot-<index, 10 digits>-<term, 10 digits>.snap   (a temporary one ends in .tmp)
 *
 * ## Format (version 2), integers unsigned 32-bit little-endian
 *   offset  bytes  field
 *   0       8      magic "KVSNAPSH"
 *   8       4      format version (2; version 1 files, without the membership fields, still load)
 *   12      4      CRC-32 (IEEE) of bytes [16, end of file)
 *   16      4      last included index
 *   20      4      last included term
 *   24      4      voter count n
 *   28      4n     voter ids
 *   28+4n   4      membership length m (0: none recorded)
 *   32+4n   m      the configuration at the last included index, as a membership entry's data
 *                  (src/raft/membership.ts: voters and learners with their addresses)
 *   32+4n+m ...    state machine bytes (KvStateMachine's snapshot, src/kv/kv_snapshot.ts), to
 *                  the end of the file
 *
 * Loading tries the snapshots newest first; one that is damaged (bad magic, version, checksum,
 * or a name that disagrees with its contents) is reported and the previous one is tried. The
 * newest `snapshots_kept` are kept, so one damaged file still leaves a fallback.
 */
import * as path from 'node:path';
import type { NodeId, SnapshotMeta, SnapshotPoint } from '../raft/types';
import { decodeMembership, encodeMembership } from '../raft/membership';
import { CommandMalformedError, StorageCorruptError } from '../util/errors';
import { LIMITS } from '../util/limits';
import { crc32 } from './frame';
import type { LogFile, StorageIo } from './io';

/**
 * Builds a state from a snapshot's state bytes, pushed in order chunk by chunk (the parser may keep
 * a chunk; nobody changes it afterwards); StorageCorruptError from `push` or `finish` if malformed.
 */
export interface SnapshotStateParser<T> {
  push(chunk: Buffer): void;
  finish(): T;
}

/** A parser for the `state_bytes` bytes of a snapshot's state. */
export type SnapshotParserFactory<T> = (state_bytes: number) => SnapshotStateParser<T>;

/** The default: the state's bytes as they are (tests, tools). */
export const STATE_BYTES: SnapshotParserFactory<Buffer> = (state_bytes) => {
  const state = Buffer.allocUnsafe(state_bytes);
  let filled = 0;
  return {
    push: (chunk) => {
      filled += chunk.copy(state, filled);
    },
    finish: () => state.subarray(0, filled),
  };
};

export interface LoadedSnapshot<T = Buffer> {
  meta: SnapshotMeta;
  /** The state, as the parser built it from the state bytes (default: the bytes). */
  state: T;
  file: string;
  file_bytes: number;
}

/**
 * A snapshot's state bytes, pulled chunk by chunk; null after the last chunk. A chunk may be
 * reused by the source once `next` is called again.
 */
export interface SnapshotSource {
  next(): Uint8Array | null;
}

export interface WrittenSnapshot {
  file: string;
  file_bytes: number;
}

const MAGIC = Buffer.from('KVSNAPSH', 'ascii');
const VERSION = 2;
const VERSION_WITHOUT_MEMBERSHIP = 1;
const FIXED_HEADER_BYTES = 28;
/** A largest header: voters and a membership entry of a largest cluster. */
const HEADER_BYTES_MAX =
  FIXED_HEADER_BYTES +
  4 * LIMITS.cluster_nodes_max +
  4 +
  6 +
  LIMITS.cluster_nodes_max * (9 + LIMITS.membership_address_bytes_max);
/** The stored checksum (u32 at CRC_AT) covers the file's bytes from CRC_FROM to its end. */
const CRC_AT = 12;
const CRC_FROM = 16;
/** Loading reads a snapshot file in chunks of this size. */
const LOAD_CHUNK_BYTES = LIMITS.wal_replay_chunk_bytes;
const NAME_PATTERN = /^snapshot-(\d{10})-(\d{10})\.snap$/;
/** A snapshot being received from the leader (InstallSnapshot); never loaded, removed at open. */
const RECEIVE_SUFFIX = '.recv';

/** The running checksum `crc` of a file read in order, extended by `bytes` at `offset`. */
function extendChecksum(crc: number, offset: number, bytes: Buffer): number {
  if (offset + bytes.length <= CRC_FROM) return crc;
  return crc32(bytes.subarray(Math.max(0, CRC_FROM - offset)), crc);
}

export function snapshotFileName(index: number, term: number): string {
  return `snapshot-${String(index).padStart(10, '0')}-${String(term).padStart(10, '0')}.snap`;
}

export class SnapshotStore {
  constructor(
    private readonly io: StorageIo,
    private readonly dir: string,
    private readonly fsync: boolean,
    private readonly snapshots_kept = 2,
  ) {}

  /**
   * Writes a snapshot durably (see the file comment), then removes snapshots older than the
   * newest `snapshots_kept` and any temporary file. The state is written in bounded chunks, the
   * checksum computed chunk by chunk.
   */
  write(meta: SnapshotMeta, state: Uint8Array): Promise<WrittenSnapshot> {
    let at = 0;
    return this.writeFrom(meta, {
      next: () => {
        if (at >= state.length) return null;
        const chunk = state.subarray(at, Math.min(state.length, at + LIMITS.wal_write_bytes_max));
        at += chunk.length;
        return chunk;
      },
    });
  }

  /**
   * As `write`, with the state pulled from `source` one chunk at a time: each chunk is written
   * (and the event loop runs) before the next is asked for, so a state machine can produce its
   * bytes incrementally while it keeps serving.
   */
  async writeFrom(meta: SnapshotMeta, source: SnapshotSource): Promise<WrittenSnapshot> {
    const name = snapshotFileName(meta.index, meta.term);
    const final_path = path.join(this.dir, name);
    const temp_path = `${final_path}.tmp`;
    const header = encodeHeader(meta);
    await this.io.unlink(temp_path);
    const file = await this.io.openLog(temp_path);
    let position = header.length;
    try {
      let crc = crc32(header.subarray(CRC_FROM));
      for (let chunk = source.next(); chunk !== null; chunk = source.next()) {
        if (chunk.length === 0) continue;
        crc = crc32(chunk, crc);
        await file.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength), position);
        position += chunk.length;
      }
      header.writeUInt32LE(crc, CRC_AT);
      await file.write(header, 0);
      if (this.fsync) await file.datasync();
    } finally {
      await file.close();
    }
    await this.io.rename(temp_path, final_path);
    if (this.fsync) await this.io.syncDirectory(this.dir);
    await this.removeOld(true);
    return { file: final_path, file_bytes: position };
  }

  /**
   * The newest snapshot that verifies, or null if there is none; each damaged one is passed to
   * `onDamaged` (for a log line) and skipped. Partial received snapshots are removed (a restart
   * never resumes one), from the same directory listing.
   */
  loadNewest(
    onDamaged: (file: string, reason: string) => void,
  ): Promise<LoadedSnapshot<Buffer> | null> {
    return this.loadNewestWith(onDamaged, STATE_BYTES);
  }

  /**
   * As `loadNewest`, the state built by `parser` while the file is read in chunks (never the whole
   * file at once); a file whose state does not parse counts as damaged.
   */
  async loadNewestWith<T>(
    onDamaged: (file: string, reason: string) => void,
    parser: SnapshotParserFactory<T>,
  ): Promise<LoadedSnapshot<T> | null> {
    const listing = await this.io.listDirectory(this.dir);
    await this.removePartialReceives(listing);
    for (const name of newestFirst(listing)) {
      const file = path.join(this.dir, name);
      try {
        return await this.load(file, name, parser);
      } catch (error) {
        if (!(error instanceof StorageCorruptError)) throw error;
        onDamaged(file, error.message);
      }
    }
    return null;
  }

  /**
   * The newest snapshot file opened for streaming to a follower as opaque bytes (the follower
   * verifies it), or null if there is none. The open handle keeps the bytes readable even if a
   * newer snapshot removes the file meanwhile.
   */
  async openNewestReader(): Promise<SnapshotFileReader | null> {
    const name = (await this.snapshotNames())[0];
    if (name === undefined) return null;
    const match = NAME_PATTERN.exec(name);
    if (match === null) return null;
    const handle = await this.io.openLog(path.join(this.dir, name));
    const total_bytes = await handle.size();
    if (total_bytes === 0) {
      await handle.close();
      return null;
    }
    return new SnapshotFileReader(handle, Number(match[1]), Number(match[2]), total_bytes);
  }

  /**
   * Starts receiving the snapshot (index, term) of `total_bytes` into a temporary file in the data
   * directory (replacing any earlier partial one).
   */
  async receive(index: number, term: number, total_bytes: number): Promise<SnapshotFileWriter> {
    const final_path = path.join(this.dir, snapshotFileName(index, term));
    const temp_path = `${final_path}${RECEIVE_SUFFIX}`;
    await this.io.unlink(temp_path);
    const file = await this.io.openLog(temp_path);
    return new SnapshotFileWriter(this, file, { index, term }, total_bytes, temp_path, final_path);
  }

  /** Removes partial received snapshots among `listing` (the directory's names). */
  private async removePartialReceives(listing: string[]): Promise<void> {
    for (const name of listing) {
      if (name.endsWith(`.snap${RECEIVE_SUFFIX}`)) await this.io.unlink(path.join(this.dir, name));
    }
  }

  /** Loads the snapshot file for `point` (a received one, once installed); throws if damaged. */
  loadPoint(point: SnapshotPoint): Promise<LoadedSnapshot<Buffer>>;
  loadPoint<T>(point: SnapshotPoint, parser: SnapshotParserFactory<T>): Promise<LoadedSnapshot<T>>;
  loadPoint<T>(
    point: SnapshotPoint,
    parser?: SnapshotParserFactory<T>,
  ): Promise<LoadedSnapshot<T | Buffer>> {
    const name = snapshotFileName(point.index, point.term);
    const factory: SnapshotParserFactory<T | Buffer> = parser ?? STATE_BYTES;
    return this.load(path.join(this.dir, name), name, factory);
  }

  /** Internal (SnapshotFileWriter): a received file is complete and verified; make it durable. */
  async commitReceived(file: LogFile, temp_path: string, final_path: string): Promise<void> {
    try {
      if (this.fsync) await file.datasync();
    } finally {
      await file.close();
    }
    await this.io.rename(temp_path, final_path);
    if (this.fsync) await this.io.syncDirectory(this.dir);
    await this.removeOld(false);
  }

  /** Internal: removes a temporary file. */
  unlink(file_path: string): Promise<void> {
    return this.io.unlink(file_path);
  }

  /** Snapshot file names, newest (highest index) first. */
  async snapshotNames(): Promise<string[]> {
    return newestFirst(await this.io.listDirectory(this.dir));
  }

  /**
   * Reads the file in chunks: the header first, then the state bytes into `parser`, the checksum
   * computed as they pass; the parsed state is returned only if the checksum matches. Damage is
   * reported as a checksum mismatch, as when the whole file was checked first: another problem
   * (a header field, the state) is reported only if the checksum matches.
   */
  private async load<T>(
    file: string,
    name: string,
    parser: SnapshotParserFactory<T>,
  ): Promise<LoadedSnapshot<T>> {
    const handle = await this.io.openLog(file);
    try {
      const size = await handle.size();
      const read = (at: number, length: number): Promise<Buffer> =>
        readFully(handle, at, length, `${file} (${size} bytes)`);
      const first = await read(0, Math.min(size, Math.max(HEADER_BYTES_MAX, LOAD_CHUNK_BYTES)));
      checkPrefix(first, file);
      const started = guard(() => {
        const { meta, header_bytes } = decodeHeader(first, file);
        checkName(meta, name, file);
        const state = parser(size - header_bytes);
        state.push(first.subarray(header_bytes));
        return { meta, state };
      });
      let problem = started instanceof StorageCorruptError ? started : null;
      let crc = crc32(first.subarray(CRC_FROM));
      for (let at = first.length; at < size; ) {
        const chunk = await read(at, Math.min(LOAD_CHUNK_BYTES, size - at));
        crc = crc32(chunk, crc);
        at += chunk.length;
        if (problem !== null || started instanceof StorageCorruptError) continue;
        problem = guard(() => {
          started.state.push(chunk);
          return null;
        });
      }
      if (crc !== first.readUInt32LE(CRC_AT))
        throw new StorageCorruptError(`${file}: checksum mismatch`);
      if (problem !== null) throw problem;
      if (started instanceof StorageCorruptError) throw started;
      const state = guard(() => started.state.finish());
      if (state instanceof StorageCorruptError) throw state;
      return { meta: started.meta, state, file, file_bytes: size };
    } finally {
      await handle.close();
    }
  }

  /** `remove_temps`: also temporary files of local writes (only one local write runs at once). */
  private async removeOld(remove_temps: boolean): Promise<void> {
    const names = await this.snapshotNames();
    let removed = false;
    for (const name of names.slice(this.snapshots_kept)) {
      await this.io.unlink(path.join(this.dir, name));
      removed = true;
    }
    for (const name of remove_temps ? await this.io.listDirectory(this.dir) : []) {
      if (!name.endsWith('.snap.tmp')) continue;
      await this.io.unlink(path.join(this.dir, name));
      removed = true;
    }
    if (removed && this.fsync) await this.io.syncDirectory(this.dir);
  }
}

/** The header with a zero checksum (filled in once the state is written). */
function encodeHeader(meta: SnapshotMeta): Buffer {
  const membership =
    meta.membership === undefined ? Buffer.alloc(0) : encodeMembership(meta.membership);
  const voters_end = FIXED_HEADER_BYTES + 4 * meta.voters.length;
  const header = Buffer.alloc(voters_end + 4 + membership.length);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(VERSION, 8);
  header.writeUInt32LE(meta.index, 16);
  header.writeUInt32LE(meta.term, 20);
  header.writeUInt32LE(meta.voters.length, 24);
  for (const [i, id] of meta.voters.entries()) header.writeUInt32LE(id, FIXED_HEADER_BYTES + 4 * i);
  header.writeUInt32LE(membership.length, voters_end);
  header.set(membership, voters_end + 4);
  return header;
}

/** Snapshot file names among `names`, newest (highest index) first. */
function newestFirst(names: string[]): string[] {
  // Zero-padded: name order is index order, then term order.
  return names
    .filter((n) => NAME_PATTERN.test(n))
    .sort()
    .reverse();
}

/** `run`'s result, or the StorageCorruptError it threw (any other error is thrown on). */
function guard<R>(run: () => R): R | StorageCorruptError {
  try {
    return run();
  } catch (error) {
    if (error instanceof StorageCorruptError) return error;
    throw error;
  }
}

/** `length` bytes of `handle` from `at` into a fresh buffer; StorageCorruptError if it ends. */
async function readFully(handle: LogFile, at: number, length: number, what: string) {
  const chunk = Buffer.allocUnsafeSlow(length);
  let got = 0;
  while (got < length) {
    const n = await handle.read(chunk, got, length - got, at + got);
    if (n === 0) throw new StorageCorruptError(`${what}: ends at ${at + got}`);
    got += n;
  }
  return chunk;
}

/** The fixed start of a snapshot file: long enough, magic, a version this build reads. */
function checkPrefix(bytes: Buffer, file: string): void {
  if (bytes.length < FIXED_HEADER_BYTES)
    throw new StorageCorruptError(`${file}: ${bytes.length} bytes, shorter than a header`);
  if (!bytes.subarray(0, MAGIC.length).equals(MAGIC))
    throw new StorageCorruptError(`${file}: bad magic`);
  const version = bytes.readUInt32LE(8);
  if (version !== VERSION && version !== VERSION_WITHOUT_MEMBERSHIP)
    throw new StorageCorruptError(`${file}: unknown version ${version}`);
}

function checkName(meta: SnapshotMeta, name: string, file: string): void {
  const expected = NAME_PATTERN.exec(name);
  if (expected === null || Number(expected[1]) !== meta.index || Number(expected[2]) !== meta.term)
    throw new StorageCorruptError(`${file}: contents (index ${meta.index}) disagree with name`);
}

/** The header at the start of `bytes` (its checksum is the caller's to check). */
function decodeHeader(bytes: Buffer, file: string): { meta: SnapshotMeta; header_bytes: number } {
  checkPrefix(bytes, file);
  const version = bytes.readUInt32LE(8);
  const voter_count = bytes.readUInt32LE(24);
  if (FIXED_HEADER_BYTES + 4 * voter_count > bytes.length)
    throw new StorageCorruptError(`${file}: ${voter_count} voters do not fit`);
  const voters: NodeId[] = [];
  for (let i = 0; i < voter_count; i++) voters.push(bytes.readUInt32LE(FIXED_HEADER_BYTES + 4 * i));
  const meta: SnapshotMeta = {
    index: bytes.readUInt32LE(16),
    term: bytes.readUInt32LE(20),
    voters,
  };
  const voters_end = FIXED_HEADER_BYTES + 4 * voter_count;
  if (version === VERSION_WITHOUT_MEMBERSHIP) return { meta, header_bytes: voters_end };
  if (voters_end + 4 > bytes.length) throw new StorageCorruptError(`${file}: truncated header`);
  const membership_bytes = bytes.readUInt32LE(voters_end);
  const header_bytes = voters_end + 4 + membership_bytes;
  if (header_bytes > bytes.length)
    throw new StorageCorruptError(`${file}: membership of ${membership_bytes} B does not fit`);
  if (membership_bytes > 0) {
    try {
      meta.membership = decodeMembership(bytes.subarray(voters_end + 4, header_bytes));
    } catch (error) {
      if (!(error instanceof CommandMalformedError)) throw error;
      throw new StorageCorruptError(`${file}: ${error.message}`);
    }
  }
  return { meta, header_bytes };
}

/**
 * Reads a snapshot file in chunks for InstallSnapshot (never the whole file at once). Each
 * sequential pass (from offset 0) verifies the file's checksum as the bytes go by: a file that
 * rotted on disk after it was written fails the read of its last chunk (StorageCorruptError), so
 * the leader learns that its file is damaged instead of having every follower reject it forever.
 */
export class SnapshotFileReader {
  /** The file's bytes [0, CRC_FROM): the stored checksum, as read. */
  private readonly head = Buffer.alloc(CRC_FROM);
  /** Bytes the running checksum covers: the next offset that continues the sequential pass. */
  private verified_to = 0;
  private crc = 0;

  constructor(
    private readonly handle: LogFile,
    readonly index: number,
    readonly term: number,
    readonly total_bytes: number,
  ) {}

  /** Up to `bytes_max` bytes from `offset` (fewer only at the end of the file). */
  async read(offset: number, bytes_max: number): Promise<Buffer> {
    const length = Math.max(0, Math.min(bytes_max, this.total_bytes - offset));
    const chunk = Buffer.allocUnsafe(length);
    let read = 0;
    while (read < length) {
      const got = await this.handle.read(chunk, read, length - read, offset + read);
      if (got === 0) throw new StorageCorruptError(`snapshot ${this.index} ends before ${offset}`);
      read += got;
    }
    // Every pass from the start verifies anew: bytes that rotted after an earlier pass (a follower
    // that rejected the whole file answers with offset 0) are found as well.
    if (offset === 0) {
      this.verified_to = 0;
      this.crc = 0;
    }
    if (offset === this.verified_to) this.verify(offset, chunk);
    return chunk;
  }

  private verify(offset: number, chunk: Buffer): void {
    if (offset < CRC_FROM)
      chunk.copy(this.head, offset, 0, Math.min(chunk.length, CRC_FROM - offset));
    this.crc = extendChecksum(this.crc, offset, chunk);
    this.verified_to = offset + chunk.length;
    if (this.verified_to < this.total_bytes) return;
    if (this.total_bytes < CRC_FROM || this.head.readUInt32LE(CRC_AT) !== this.crc)
      throw new StorageCorruptError(
        `snapshot ${this.index} (term ${this.term}): checksum mismatch`,
      );
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/**
 * Writes a snapshot received in order, chunk by chunk, into a temporary file, computing the
 * file's own checksum as the bytes arrive; `finish` verifies it (magic, version, CRC, index and
 * term against what the leader announced), fdatasyncs, renames it to its final name and fsyncs
 * the directory. A crash at any point leaves either no new snapshot or a complete, valid one.
 */
export class SnapshotFileWriter {
  private written = 0;
  private crc = 0;
  private readonly head = Buffer.alloc(FIXED_HEADER_BYTES);
  /** The file's first bytes, up to a largest header: the membership the snapshot records. */
  private readonly header = Buffer.alloc(HEADER_BYTES_MAX);
  private closed = false;

  constructor(
    private readonly store: SnapshotStore,
    private readonly file: LogFile,
    readonly point: SnapshotPoint,
    readonly total_bytes: number,
    private readonly temp_path: string,
    private readonly final_path: string,
  ) {}

  /** Bytes written so far: the next offset the writer accepts. */
  get next_offset(): number {
    return this.written;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (offset !== this.written || offset + data.length > this.total_bytes)
      throw new StorageCorruptError(`chunk at ${offset} does not follow ${this.written}`);
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (offset < FIXED_HEADER_BYTES)
      bytes.copy(this.head, offset, 0, Math.min(bytes.length, FIXED_HEADER_BYTES - offset));
    if (offset < HEADER_BYTES_MAX)
      bytes.copy(this.header, offset, 0, Math.min(bytes.length, HEADER_BYTES_MAX - offset));
    this.crc = extendChecksum(this.crc, offset, bytes);
    await this.file.write(bytes, offset);
    this.written += bytes.length;
  }

  /** Verifies and makes durable; throws StorageCorruptError (temp file removed) if damaged. */
  async finish(): Promise<SnapshotMeta> {
    const problem = this.verify();
    if (problem !== null) {
      await this.abandon();
      throw new StorageCorruptError(`received snapshot ${this.point.index}: ${problem}`);
    }
    this.closed = true;
    await this.store.commitReceived(this.file, this.temp_path, this.final_path);
    // The checksum over the whole file was verified: the header decodes as written.
    const length = Math.min(this.total_bytes, HEADER_BYTES_MAX);
    const { meta } = decodeHeader(this.header.subarray(0, length), this.final_path);
    return meta;
  }

  /** Drops the partial file. */
  async abandon(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.file.close().catch(() => undefined);
    }
    await this.store.unlink(this.temp_path);
  }

  private verify(): string | null {
    const head = this.head;
    if (this.written !== this.total_bytes) return `${this.written} of ${this.total_bytes} bytes`;
    if (this.total_bytes < FIXED_HEADER_BYTES) return 'shorter than a header';
    if (!head.subarray(0, MAGIC.length).equals(MAGIC)) return 'bad magic';
    if (head.readUInt32LE(8) !== VERSION) return `unknown version ${head.readUInt32LE(8)}`;
    if (head.readUInt32LE(CRC_AT) !== this.crc) return 'checksum mismatch';
    if (head.readUInt32LE(16) !== this.point.index || head.readUInt32LE(20) !== this.point.term)
      return `holds index ${head.readUInt32LE(16)} term ${head.readUInt32LE(20)}`;
    return null;
  }
}
