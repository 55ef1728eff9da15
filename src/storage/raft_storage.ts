/**
 * The durable Raft log: hard state (term, vote, commit) and every log entry,
 * in one append-only write-ahead log per node. save() resolves only once its
 * bytes are written and fdatasync'd, so the server may then send the messages
 * that depend on them.
 *
 * ## Files in the data directory
 *   LOCK      pid of the process that has the directory open (see lock.ts)
 *   raft.wal  the write-ahead log
 *   raft.wal.tmp  a compaction's new log before its rename (removed by the next compaction)
 *   snapshot-<index>-<term>.snap  snapshots (format in snapshot_store.ts), the newest two kept
 *
 * ## raft.wal format (version 1)
 * A sequence of records; integers are unsigned 32-bit little-endian.
 *
 *   offset  bytes  field
 *   0       4      crc            CRC-32 (IEEE, as zlib) of bytes [4, 16 + payload_bytes) of this
 * record
 *   4       4      prev_crc       crc field of the previous record; 0 in the first record
 *   8       4      payload_bytes  at most LIMITS.wal_record_bytes_max
 *   12      1      type           1 = file header, 2 = save, 3 = base
 *   13      3      reserved       zero
 *   16      ...    payload
 *
 * prev_crc chains the records: a record from another file, or from an older
 * generation of this one, verifies on its own but breaks the chain.
 *
 * File header payload, the first record and only there (16 bytes):
 *   "KVRAFTWL" (8 ASCII bytes), format version (u32 = 1), zero (u32).
 *
 * Save payload, one record per save() call, so a save is replayed whole or not at all:
 *   flags (u8: bit 0 hard state follows, bit 1 entries follow), 3 zero bytes,
 *   if bit 0: term, vote, commit (u32 each),
 *   if bit 1: first_index, count (u32 each), then count times: term (u32), data_bytes (u32), data.
 * Replaying a save drops every entry at index >= first_index, appends the
 * entries from first_index on, then replaces the hard state. first_index must
 * lie in [base + 1, last index + 1].
 *
 * Base payload, only as the second record (8 bytes): index, term (u32 each). The
 * log in this file starts after that point, which a snapshot covers; without a
 * base record the log starts at index 1.
 *
 * ## Compaction (compactLog)
 * Once a snapshot is durable the log is rewritten: file header, base record,
 * then the hard state and the retained entries as saves, into raft.wal.tmp,
 * fdatasync'd, renamed over raft.wal, the directory fsync'd. It is queued with
 * the saves: saves called before it reach the old file, saves called after it
 * are chained to the new file's last record. A crash before the directory
 * fsync leaves either file whole.
 *
 * ## Snapshots at open
 * The newest snapshot that verifies is loaded (damaged ones are reported and
 * skipped). Its index must be at or above the log's base, or entries in between
 * are in no file: StorageCorruptError. The log keeps its entries from its base;
 * the state machine restarts at the snapshot's index (RestoredState.applied_index).
 * A snapshot ahead of the log's end restarts the log after it (a compaction).
 *
 * ## Writing (group commit)
 * save() encodes its record at call time, chaining it to the previous call's,
 * and queues it. One writer at a time takes everything queued, writes it at the
 * end of the file (one write() per wal_write_bytes_max), then one fdatasync
 * covers the whole batch; only then do those saves resolve and does the next
 * batch start. So saves made while an fsync runs share the next one, the file
 * holds records in call order, and at any moment only the bytes after the last
 * completed fdatasync (the end of the file) can be damaged by a crash.
 * A failed write or fsync fails that batch, everything queued and every later
 * save (after a failed fsync the kernel may have dropped the dirty pages, so
 * nothing since the last good one can be trusted); the process should restart
 * and recover from the file.
 *
 * ## Opening
 * Every open fdatasyncs the log and fsyncs its directory before it returns,
 * even when it changed nothing: a process killed before its fsync leaves its
 * records (and a new log's name) in the page cache, replay returns them and
 * this process acts on them, so a later power loss must not take them back.
 *
 * ## Replay and the torn-tail rule
 * Records are read from the start. A record is *intact* if its header is
 * complete and plausible (known type, zero reserved bytes, payload_bytes within
 * the limit and within the file) and its crc matches. Replay stops at the first
 * record that is not intact; call its offset B.
 *   - No intact record starts anywhere in (B, EOF): the bytes from B on are the
 *     remains of the write a crash interrupted (cut short, zero-filled or
 *     garbage). The file is truncated to B, the truncation is fsync'd before
 *     anything is appended, and recovery reports the bytes dropped.
 *   - An intact record starts after B: something was written after the damage,
 *     and a write only starts once the previous fsync completed, so the damage
 *     hit data that had been durable: StorageCorruptError naming the file, B and
 *     the offset of the intact record. Within the damaged record's own extent
 *     (its header, chained to the log, is plausible and claims those bytes), an
 *     intact-looking record counts only if a chain of intact records runs from it
 *     to the end of the file: a client value may embed a well-formed record
 *     (replay.ts, refuseDamageBeforeTail).
 * An intact record that breaks the chain, a file header anywhere but offset 0,
 * or a payload that does not decode is corruption wherever it is.
 * Limits of the rule: damage confined to the last fsync'd record (a bit flip in
 * it) looks exactly like a torn write and is truncated, as in etcd; a crash
 * that persisted the pages of one write out of order (a later record intact, an
 * earlier one not) is reported as corruption instead of repaired. Both err
 * towards refusing to start rather than silently dropping durable data, except
 * the first, which no format without an external durable length can tell apart.
 */
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { LogEntry } from '../raft/protocol';
import type { EntriesToPersist, HardState, RestoredState, SnapshotPoint } from '../raft/types';
import { assert } from '../util/assert';
import {
  describeError,
  KvError,
  LimitExceededError,
  StorageCorruptError,
  StorageIoError,
} from '../util/errors';
import { LIMITS } from '../util/limits';
import { RECORD_HEADER_BYTES } from './frame';
import type { LogFile, StorageIo } from './io';
import { NODE_STORAGE_IO } from './io';
import { type DirLock, LOCK_FILE_NAME } from './lock';
import { encodeBase, encodeFileHeader, encodeSave, savePayloadBytes } from './payload';
import {
  type LoadedSnapshot,
  STATE_BYTES,
  type SnapshotParserFactory,
  SnapshotStore,
} from './snapshot_store';
import { checkNodeIdentity } from './node_identity';
import { type ReplayOutcome, replayLog } from './replay';

export const LOG_FILE_NAME = 'raft.wal';

export interface StorageOptions<S = Buffer> {
  /** Default true. Only tests of logic turn it off: without fsync nothing is durable. */
  fsync?: boolean;
  /**
   * This node's id: recorded in the data directory at first use and checked at every later
   * open (node_identity.ts). Absent: not checked (tests of the log alone, the simulator).
   */
  node_id?: number;
  /**
   * Builds the state from the newest valid snapshot's bytes while the file is read in chunks
   * (KvStateMachine.snapshotParser). Absent: OpenResult.snapshot.state is the bytes (S = Buffer).
   */
  snapshot_parser?: SnapshotParserFactory<S>;
  /**
   * The directory's lock, already taken by the caller because it writes there before opening
   * (the node_id file of a joining node). The storage then owns it: released on close, or when
   * the open fails.
   */
  held_lock?: DirLock;
}

export interface RecoveryReport {
  /** Save records replayed. */
  records: number;
  /** Bytes of torn tail cut off the end of the log (0 if it ended cleanly). */
  truncated_tail_bytes: number;
  /**
   * Why replay judged the bytes it cut off a torn tail (e.g. 'checksum mismatch'); null if the log
   * ended cleanly. For the recovery log line.
   */
  torn_reason: string | null;
  log_file: string;
  /** Snapshot files skipped as damaged ('file: reason'), newest first: for log lines. */
  damaged_snapshots: string[];
}

export interface OpenResult<S = Buffer> {
  storage: RaftStorage;
  /**
   * Log and hard state; the state machine restarts from `snapshot`, at restored.applied_index.
   */
  restored: RestoredState;
  /** The newest valid snapshot: the state machine restarts from its state. */
  snapshot: LoadedSnapshot<S> | null;
  recovery: RecoveryReport;
}

export interface StorageStats {
  saves: number;
  /** Batches written (each is one or more write() calls and, with fsync on, one fdatasync). */
  batches: number;
  fsyncs: number;
  fsync_last_ms: number;
  fsync_avg_ms: number;
  fsync_max_ms: number;
  bytes_written: number;
  log_file_bytes: number;
  /** Encoded bytes waiting behind the running batch. */
  queued_bytes: number;
}

interface QueuedSave {
  record: Buffer | null;
  /** A compaction: these records make up the whole new log file (see compactLog). */
  rewrite?: Buffer[];
  resolve: () => void;
  reject: (error: Error) => void;
}

const UINT32_MAX = 0xffffffff;

export class RaftStorage {
  private queue: QueuedSave[] = [];
  private queued_bytes = 0;
  private writing = false;
  private idle_waiters: Array<() => void> = [];
  private failure: KvError | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  private saves = 0;
  private batches = 0;
  private fsyncs = 0;
  private fsync_total_ms = 0;
  private fsync_last_ms = 0;
  private fsync_max_ms = 0;
  private bytes_written = 0;
  /** Told of each written batch: its bytes and fsync time (null with fsync off). For metrics. */
  batch_observer: ((bytes: number, fsync_ms: number | null) => void) | null = null;

  private constructor(
    private file: LogFile,
    private readonly lock: DirLock,
    readonly log_file: string,
    private readonly fsync: boolean,
    /** Bytes of the file holding written records; the next batch goes here. */
    private file_bytes: number,
    /** CRC of the last encoded record: the next one chains to it. */
    private last_crc: number,
    /** Last log index once every queued save is applied: bounds the next first_index. */
    private last_index: number,
    /** The log in the file starts after this index (a snapshot covers it); 0 if none. */
    private base_index: number,
    /** Hard state once every queued save is applied: a compaction writes it again. */
    private last_hard_state: HardState,
    private readonly io: StorageIo,
    readonly snapshots: SnapshotStore,
  ) {}

  /**
   * Opens (creating the directory and files if needed) and replays the log; see the file comment
   * for the recovery rule.
   */
  static open<S = Buffer>(dir: string, options: StorageOptions<S> = {}): Promise<OpenResult<S>> {
    return RaftStorage.openWithIo(dir, options, NODE_STORAGE_IO);
  }

  /**
   * Internal: open with an injected file layer, through which every file-system operation goes
   * (tests observe or fail writes and fsyncs through it; the simulator runs on an in-memory disk).
   */
  static async openWithIo<S = Buffer>(
    dir: string,
    options: StorageOptions<S>,
    io: StorageIo,
  ): Promise<OpenResult<S>> {
    const fsync = options.fsync ?? true;
    const data_dir = path.resolve(dir);
    const log_file = path.join(data_dir, LOG_FILE_NAME);
    const created_dir = await withContext(`cannot create data directory ${data_dir}`, () =>
      io.makeDirectory(data_dir),
    );
    const held = options.held_lock;
    assert(
      held === undefined || held.lock_path === path.join(data_dir, LOCK_FILE_NAME),
      `the held lock ${held?.lock_path} is not the lock of ${data_dir}`,
    );
    const lock = held ?? (await io.lockDirectory(data_dir));
    let file: LogFile | null = null;
    try {
      if (options.node_id !== undefined)
        await checkNodeIdentity(io, data_dir, options.node_id, fsync);
      const log = await withContext(`cannot open ${log_file}`, () => io.openLog(log_file));
      file = log;
      const replay = await replayLog(log, log_file);
      const { file_bytes, last_crc } = await prepareForAppend(log, log_file, replay, fsync);
      if (fsync) {
        // Every open, not only the one that creates the log: a process that died between creating
        // it and this sync left its name only in the cache, where a power loss would drop it.
        for (const directory of directoriesToSync(data_dir, created_dir)) {
          await withContext(`cannot fsync directory ${directory}`, () =>
            io.syncDirectory(directory),
          );
        }
      }
      const snapshots = new SnapshotStore(io, data_dir, fsync);
      const damaged_snapshots: string[] = [];
      // Without a parser S is Buffer (the default type argument): the state is the bytes.
      const parser = options.snapshot_parser ?? (STATE_BYTES as SnapshotParserFactory<unknown>);
      const snapshot = await snapshots.loadNewestWith(
        (file, reason) => damaged_snapshots.push(`${file}: ${reason}`),
        parser as SnapshotParserFactory<S>,
      );
      const restored = startAfterSnapshot(replay.restored, snapshot, log_file, damaged_snapshots);
      const wal_base = replay.restored.snapshot?.index ?? 0;
      const storage = new RaftStorage(
        log,
        lock,
        log_file,
        fsync,
        file_bytes,
        last_crc,
        wal_base + replay.restored.entries.length,
        wal_base,
        replay.restored.hard_state,
        io,
        snapshots,
      );
      const point = restored.snapshot;
      if (point !== undefined && point.index > wal_base && restored.entries.length === 0) {
        // The snapshot is ahead of the log (applied before this node's own copy was durable, or
        // installed from a leader, possibly over a conflicting uncommitted log): the log restarts
        // after it, so the next save can follow it.
        await storage.compactLog(point, []);
      }
      return {
        storage,
        restored,
        snapshot,
        recovery: {
          records: replay.save_records,
          truncated_tail_bytes: replay.file_bytes - replay.valid_bytes,
          torn_reason: replay.torn_reason,
          log_file,
          damaged_snapshots,
        },
      };
    } catch (error) {
      if (file !== null) await file.close().catch(() => undefined);
      await lock.release().catch(() => undefined);
      throw error;
    }
  }

  /**
   * Appends hard state and/or entries; resolves once they are durable. Calls
   * are written in call order; those made while an fsync runs share the next.
   */
  save(hard_state: HardState | null, entries: EntriesToPersist | null): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.closed)
      return Promise.reject(new StorageIoError(`${this.log_file}: save after close`));
    let record: Buffer | null = null;
    let next_last_index = this.last_index;
    if (hard_state !== null || entries !== null) {
      try {
        next_last_index = this.checkSave(hard_state, entries);
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
      const payload_bytes = savePayloadBytes(hard_state, entries);
      if (payload_bytes > LIMITS.wal_record_bytes_max) {
        return Promise.reject(
          new LimitExceededError(
            'wal_record_bytes_max',
            `save of ${payload_bytes} bytes exceeds wal_record_bytes_max ` +
              `${LIMITS.wal_record_bytes_max}`,
          ),
        );
      }
      if (this.queued_bytes + RECORD_HEADER_BYTES + payload_bytes > LIMITS.wal_queued_bytes_max) {
        return Promise.reject(
          new LimitExceededError(
            'wal_queued_bytes_max',
            `${this.queued_bytes} bytes already queued for ${this.log_file}; ` +
              `limit ${LIMITS.wal_queued_bytes_max}`,
          ),
        );
      }
      const sealed = encodeSave(hard_state, entries, this.last_crc);
      record = sealed.bytes;
      this.last_crc = sealed.crc;
      this.last_index = next_last_index;
      if (hard_state !== null) this.last_hard_state = hard_state;
      this.queued_bytes += record.length;
    }
    this.saves += 1;
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ record, resolve, reject });
      if (!this.writing) void this.writeQueued();
    });
  }

  /**
   * Drops the log up to `point`, which a durable snapshot covers: the log file is rewritten as a
   * file header, a base record (`point`), the current hard state and `entries` (the log after
   * `point` as every save so far left it, in records of at most wal_write_bytes_max), into a
   * temporary file that is fdatasync'd, renamed over the log and its directory fsync'd. Ordered
   * with saves: saves before it reach the old file first, saves after it chain to the new one.
   * Resolves once the new file is durable.
   */
  compactLog(point: SnapshotPoint, entries: LogEntry[]): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.closed)
      return Promise.reject(new StorageIoError(`${this.log_file}: compaction after close`));
    // A point past the log (a snapshot ahead of it) leaves no entries after it.
    assert(
      point.index >= this.base_index && (point.index <= this.last_index || entries.length === 0),
      `compaction point ${point.index} not below the log base ${this.base_index}`,
    );
    const header = encodeFileHeader();
    const base = encodeBase(point, header.crc);
    const records = [header.bytes, base.bytes];
    let crc = base.crc;
    let hard_state: HardState | null = this.last_hard_state;
    let first_index = point.index + 1;
    const bytes_max = LIMITS.wal_write_bytes_max;
    let at = 0;
    do {
      const batch: LogEntry[] = [];
      let batch_bytes = 0;
      while (at < entries.length && (batch.length === 0 || batch_bytes < bytes_max)) {
        const entry = entries[at++]!;
        batch.push(entry);
        batch_bytes += entry.data.length + 8;
      }
      const sealed = encodeSave(
        hard_state,
        batch.length > 0 ? { first_index, entries: batch } : null,
        crc,
      );
      records.push(sealed.bytes);
      crc = sealed.crc;
      first_index += batch.length;
      hard_state = null;
    } while (at < entries.length);
    this.last_crc = crc;
    this.last_index = point.index + entries.length;
    this.base_index = point.index;
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ record: null, rewrite: records, resolve, reject });
      if (!this.writing) void this.writeQueued();
    });
  }

  stats(): StorageStats {
    return {
      saves: this.saves,
      batches: this.batches,
      fsyncs: this.fsyncs,
      fsync_last_ms: this.fsync_last_ms,
      fsync_avg_ms: this.fsyncs === 0 ? 0 : this.fsync_total_ms / this.fsyncs,
      fsync_max_ms: this.fsync_max_ms,
      bytes_written: this.bytes_written,
      log_file_bytes: this.file_bytes,
      queued_bytes: this.queued_bytes,
    };
  }

  /** Waits for queued and in-flight saves, closes the file and releases the directory lock. */
  close(): Promise<void> {
    if (this.closing === null) {
      this.closed = true;
      this.closing = this.idle().then(async () => {
        try {
          await this.file.close();
        } finally {
          await this.lock.release();
        }
      });
    }
    return this.closing;
  }

  /**
   * Validates a save against the log as it will be when the queue is written; returns the resulting
   * last index.
   */
  private checkSave(hard_state: HardState | null, entries: EntriesToPersist | null): number {
    if (hard_state !== null) {
      assert(
        isUint32(hard_state.term) && isUint32(hard_state.vote) && isUint32(hard_state.commit),
        `hard state fields must be uint32: ${JSON.stringify(hard_state)}`,
      );
    }
    if (entries === null) return this.last_index;
    const { first_index } = entries;
    assert(
      Number.isInteger(first_index) &&
        first_index > this.base_index &&
        first_index <= this.last_index + 1,
      `entries must start in [${this.base_index + 1}, ${this.last_index + 1}], ` +
        `not at ${first_index}`,
    );
    const next_last_index = first_index - 1 + entries.entries.length;
    assert(next_last_index <= UINT32_MAX, `log index ${next_last_index} exceeds uint32`);
    for (const entry of entries.entries)
      assert(isUint32(entry.term), `entry term must be uint32, not ${entry.term}`);
    return next_last_index;
  }

  private async writeQueued(): Promise<void> {
    this.writing = true;
    while (this.queue.length > 0 && this.failure === null) {
      const rewrite_at = this.queue.findIndex((save) => save.rewrite !== undefined);
      const take = rewrite_at === 0 ? 1 : rewrite_at === -1 ? this.queue.length : rewrite_at;
      const batch = this.queue.splice(0, take);
      try {
        const rewrite = batch[0]?.rewrite;
        if (rewrite !== undefined) {
          await this.rewriteLog(rewrite);
          batch[0]?.resolve();
          continue;
        }
        await this.writeBatch(batch);
      } catch (error) {
        this.failure = ioError(
          `${this.log_file}: write or fsync failed; ` +
            'no later save will be accepted, restart to recover',
          error,
        );
        for (const save of batch) save.reject(this.failure);
      }
    }
    if (this.failure !== null) {
      for (const save of this.queue) save.reject(this.failure);
      this.queue = [];
      this.queued_bytes = 0;
    }
    this.writing = false;
    for (const waiter of this.idle_waiters.splice(0)) waiter();
  }

  private async writeBatch(batch: QueuedSave[]): Promise<void> {
    const records: Buffer[] = [];
    let batch_bytes = 0;
    for (const save of batch) {
      if (save.record === null) continue;
      records.push(save.record);
      batch_bytes += save.record.length;
    }
    this.queued_bytes -= batch_bytes;
    if (batch_bytes > 0) {
      const chunks = groupUpTo(records, LIMITS.wal_write_bytes_max);
      const position = this.file_bytes + batch_bytes;
      let fsync_ms: number | null = null;
      const started_ms = performance.now();
      const file = this.file;
      if (file.appendAndSync !== undefined) {
        // One thread-pool job per batch (see LogFile.appendAndSync); the fsync time then includes
        // the write, a copy into the page cache.
        await new Promise<void>((resolve, reject) =>
          file.appendAndSync?.(chunks, this.file_bytes, this.fsync, (error) =>
            error === null ? resolve() : reject(error),
          ),
        );
      } else {
        let at = this.file_bytes;
        for (const chunk of chunks) {
          await file.write(chunk, at);
          at += chunk.length;
        }
        if (this.fsync) await file.datasync();
      }
      this.bytes_written += batch_bytes;
      if (this.fsync) {
        const took_ms = performance.now() - started_ms;
        this.fsyncs += 1;
        this.fsync_last_ms = took_ms;
        this.fsync_total_ms += took_ms;
        this.fsync_max_ms = Math.max(this.fsync_max_ms, took_ms);
        fsync_ms = took_ms;
      }
      this.batch_observer?.(batch_bytes, fsync_ms);
      this.file_bytes = position;
      this.batches += 1;
    }
    for (const save of batch) save.resolve();
  }

  /** Writes the new log beside the old one, makes it durable, and moves it into place. */
  private async rewriteLog(records: Buffer[]): Promise<void> {
    const temp_file = `${this.log_file}.tmp`;
    await this.io.unlink(temp_file);
    const file = await this.io.openLog(temp_file);
    let position = 0;
    try {
      for (const chunk of groupUpTo(records, LIMITS.wal_write_bytes_max)) {
        await file.write(chunk, position);
        position += chunk.length;
        this.bytes_written += chunk.length;
      }
      if (this.fsync) await file.datasync();
      await this.io.rename(temp_file, this.log_file);
      if (this.fsync) await this.io.syncDirectory(path.dirname(this.log_file));
    } catch (error) {
      await file.close().catch(() => undefined);
      throw error;
    }
    const old = this.file;
    this.file = file;
    this.file_bytes = position;
    await old.close();
  }

  private idle(): Promise<void> {
    if (!this.writing && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle_waiters.push(resolve));
  }
}

/**
 * Makes a replayed log ready for appends and durable: the torn tail cut, the file header written
 * if the log is empty, and everything replayed fsync'd. Returns where the next record goes and the
 * CRC it chains to.
 */
async function prepareForAppend(
  log: LogFile,
  log_file: string,
  replay: ReplayOutcome,
  fsync: boolean,
): Promise<{ file_bytes: number; last_crc: number }> {
  const sync = async (): Promise<void> => {
    if (fsync) await withContext(`cannot fsync ${log_file}`, () => log.datasync());
  };
  let file_bytes = replay.valid_bytes;
  let last_crc = replay.last_crc;
  let synced = false;
  if (replay.file_bytes > file_bytes) {
    // Durable before anything is appended, or a crash could bring the torn bytes back behind new
    // records.
    await withContext(`cannot truncate the torn tail of ${log_file} at byte ${file_bytes}`, () =>
      log.truncate(file_bytes),
    );
    await sync();
    synced = true;
  }
  if (file_bytes === 0) {
    const header = encodeFileHeader();
    await withContext(`cannot write the file header of ${log_file}`, () =>
      log.write(header.bytes, 0),
    );
    await sync();
    synced = true;
    file_bytes = header.bytes.length;
    last_crc = header.crc;
  }
  // Records that a process killed before its fsync wrote are still in the page cache, so replay
  // returned them, and this process will act on them: they must not vanish in a later power loss.
  if (!synced) await sync();
  return { file_bytes, last_crc };
}

/**
 * The log a node restarts from, given the WAL and the newest valid snapshot: entries the snapshot
 * covers are dropped. The WAL must reach back to the snapshot (its base at or below the snapshot's
 * index), or the entries in between are lost: StorageCorruptError saying so.
 */
function startAfterSnapshot(
  wal: RestoredState,
  snapshot: LoadedSnapshot<unknown> | null,
  log_file: string,
  damaged: string[],
): RestoredState {
  const wal_base = wal.snapshot?.index ?? 0;
  const snapshot_index = snapshot?.meta.index ?? 0;
  if (snapshot_index < wal_base) {
    const found =
      snapshot === null
        ? 'no valid snapshot'
        : `the newest valid snapshot covers ${snapshot_index}`;
    const skipped = damaged.length === 0 ? '' : ` (damaged: ${damaged.join('; ')})`;
    throw new StorageCorruptError(
      `${log_file} starts after index ${wal_base}, but ${found}${skipped}: ` +
        `entries up to ${wal_base} are in no file; restore the data directory or wipe it`,
    );
  }
  if (snapshot === null) return wal;
  const point: SnapshotPoint = { index: snapshot.meta.index, term: snapshot.meta.term };
  const wal_last = wal_base + wal.entries.length;
  const hard_state = { ...wal.hard_state, commit: Math.max(wal.hard_state.commit, point.index) };
  const membership = snapshot.meta.membership;
  const with_membership = membership === undefined ? {} : { membership };
  // The snapshot is ahead of the log: the log restarts after it (see openWithIo).
  if (wal_last < point.index)
    return {
      hard_state,
      entries: [],
      snapshot: point,
      applied_index: point.index,
      ...with_membership,
    };
  if (wal_last > point.index) {
    const term =
      point.index === wal_base ? wal.snapshot?.term : wal.entries[point.index - wal_base - 1]?.term;
    // A snapshot installed from the leader past our commit index replaces a conflicting log that
    // the crash left behind (Figure 13 rule 7); a conflict within the committed log is damage.
    if (term !== point.term && wal.hard_state.commit < point.index)
      return { hard_state, entries: [], snapshot: point, applied_index: point.index };
    if (term !== point.term) {
      throw new StorageCorruptError(
        `${snapshot.file} ends at index ${point.index} in term ${point.term}, ` +
          `but ${log_file} has term ${String(term)} there`,
      );
    }
  }
  // The log keeps the entries the snapshot covers from the WAL's start on: a leader may still
  // need them for a follower (a node compacts its log only as leader, see the driver).
  return {
    hard_state,
    entries: wal.entries,
    ...(wal.snapshot === undefined ? {} : { snapshot: wal.snapshot }),
    applied_index: point.index,
    ...with_membership,
  };
}

/** Concatenates buffers into chunks of at most `bytes_max` (a single larger buffer stays alone). */
function groupUpTo(buffers: Buffer[], bytes_max: number): Buffer[] {
  const chunks: Buffer[] = [];
  let pending: Buffer[] = [];
  let pending_bytes = 0;
  for (const buffer of buffers) {
    if (pending_bytes > 0 && pending_bytes + buffer.length > bytes_max) {
      chunks.push(Buffer.concat(pending, pending_bytes));
      pending = [];
      pending_bytes = 0;
    }
    pending.push(buffer);
    pending_bytes += buffer.length;
  }
  if (pending_bytes > 0)
    chunks.push(
      pending.length === 1 && pending[0] !== undefined
        ? pending[0]
        : Buffer.concat(pending, pending_bytes),
    );
  return chunks;
}

/**
 * The data directory (for the new log file's name) and, up to the parent of the first directory
 * mkdir created, each new directory's parent.
 */
function directoriesToSync(data_dir: string, created_dir: string | undefined): string[] {
  const directories = [data_dir];
  if (created_dir === undefined) return directories;
  const top = path.dirname(created_dir);
  let directory = data_dir;
  while (directory !== top && path.dirname(directory) !== directory) {
    directory = path.dirname(directory);
    directories.push(directory);
  }
  return directories;
}

function isUint32(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= UINT32_MAX;
}

/** Runs a file operation, turning a failure into a StorageIoError that says what we were doing. */
async function withContext<T>(context: string, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw ioError(context, error);
  }
}

function ioError(context: string, error: unknown): KvError {
  if (error instanceof KvError) return error;
  return new StorageIoError(`${context}: ${describeError(error)}`);
}
