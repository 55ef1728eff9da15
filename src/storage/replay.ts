/**
 * Replays a write-ahead log file into the state a Raft node restarts from,
 * and decides where the valid log ends: a torn tail (the remains of the write
 * a crash interrupted) is reported for truncation; damage anywhere before it
 * is a StorageCorruptError. The rule is documented in raft_storage.ts.
 */
import type { HardState, RestoredState, SnapshotPoint } from '../raft/types';
import { NO_NODE } from '../raft/types';
import type { LogEntry } from '../raft/protocol';
import { StorageCorruptError } from '../util/errors';
import { LIMITS } from '../util/limits';
import { ChunkReader } from './chunk_reader';
import {
  parseRecordHeader,
  RECORD_HEADER_BYTES,
  type RecordHeader,
  recordCrcMatches,
  RecordType,
} from './frame';
import type { LogFile } from './io';
import { checkFileHeader, decodeBase, decodeSave } from './payload';

export interface ReplayOutcome {
  restored: RestoredState;
  /** Save records applied (the file header not counted). */
  save_records: number;
  /** Bytes from the start of the file that hold intact, chained records. */
  valid_bytes: number;
  file_bytes: number;
  /** CRC of the last valid record (0 if none): the next record chains to it. */
  last_crc: number;
  /** Why the bytes after valid_bytes are a torn tail, or null if the file ended cleanly. */
  torn_reason: string | null;
}

/** What replay has rebuilt so far, and where the next record starts. */
interface ReplayState {
  /** The log before this file's entries, covered by a snapshot (a base record); 0 if none. */
  base: SnapshotPoint;
  /** entries[0] is index base.index + 1. */
  entries: LogEntry[];
  hard_state: HardState;
  /** Byte offset of the next record: after the loop, the end of the valid records. */
  offset: number;
  /** CRC of the last intact record (0 before the first): the next one must chain to it. */
  prev_crc: number;
  save_records: number;
}

interface IntactRecord {
  header: RecordHeader;
  /** The whole record, header and payload; a view valid until the next read. */
  record: Buffer;
}

export async function replayLog(file: LogFile, file_path: string): Promise<ReplayOutcome> {
  const file_bytes = await file.size();
  const reader = new ChunkReader(file, file_path, file_bytes, LIMITS.wal_replay_chunk_bytes);
  const state: ReplayState = {
    base: { index: 0, term: 0 },
    entries: [],
    hard_state: { term: 0, vote: NO_NODE, commit: 0 },
    offset: 0,
    prev_crc: 0,
    save_records: 0,
  };
  let damage: string | null = null;
  while (state.offset < file_bytes) {
    const intact = await readIntactRecord(reader, state.offset);
    if (typeof intact === 'string') {
      damage = intact;
      break;
    }
    applyRecord(state, intact, file_path);
  }
  if (damage !== null)
    await refuseDamageBeforeTail(reader, file_path, state.offset, state.prev_crc, damage);
  return {
    restored: {
      hard_state: state.hard_state,
      entries: state.entries,
      ...(state.base.index > 0 ? { snapshot: state.base } : {}),
    },
    save_records: state.save_records,
    valid_bytes: state.offset,
    file_bytes,
    last_crc: state.prev_crc,
    torn_reason: damage,
  };
}

/** The intact record at `offset`, or why none is there (a complete header and a matching crc). */
async function readIntactRecord(
  reader: ChunkReader,
  offset: number,
): Promise<IntactRecord | string> {
  const bytes_to_eof = reader.file_bytes - offset;
  if (bytes_to_eof < RECORD_HEADER_BYTES)
    return `only ${bytes_to_eof} bytes left, less than a record header`;
  const header = parseRecordHeader(await reader.view(offset, RECORD_HEADER_BYTES), 0, bytes_to_eof);
  if (typeof header === 'string') return header;
  const record_bytes = RECORD_HEADER_BYTES + header.payload_bytes;
  const record = (await reader.view(offset, record_bytes)).subarray(0, record_bytes);
  if (!recordCrcMatches(record)) return 'checksum mismatch';
  return { header, record };
}

/**
 * Applies an intact record to the state. The record is intact, so a torn write cannot explain
 * anything wrong with it: every problem from here on is corruption.
 */
function applyRecord(state: ReplayState, intact: IntactRecord, file_path: string): void {
  const { header, record } = intact;
  const corrupt = (problem: string): StorageCorruptError =>
    new StorageCorruptError(`${file_path}: record at byte offset ${state.offset}: ${problem}`);
  if (header.prev_crc !== state.prev_crc) {
    throw corrupt(
      `breaks the checksum chain (its prev_crc is ${hex(header.prev_crc)}, ` +
        `the previous record's crc is ${hex(state.prev_crc)})`,
    );
  }
  const payload = record.subarray(RECORD_HEADER_BYTES);
  if (state.offset === 0) {
    if (header.type !== RecordType.FileHeader)
      throw corrupt('the first record is not a file header');
    const problem = checkFileHeader(payload);
    if (problem !== null) throw corrupt(problem);
  } else if (header.type === RecordType.Base) {
    if (state.save_records > 0 || state.base.index > 0 || state.entries.length > 0)
      throw corrupt('a base record after the first save');
    const base = decodeBase(payload);
    if (typeof base === 'string') throw corrupt(base);
    state.base = base;
  } else {
    if (header.type !== RecordType.Save)
      throw corrupt('a file header record after the start of the file');
    const problem = applySave(state, payload);
    if (problem !== null) throw corrupt(problem);
  }
  state.prev_crc = header.crc;
  state.offset += record.length;
}

/** Replays one save payload; returns why it cannot be applied, or null. */
function applySave(state: ReplayState, payload: Buffer): string | null {
  const save = decodeSave(payload);
  if (typeof save === 'string') return save;
  if (save.entries !== null) {
    const { first_index } = save.entries;
    const { entries, base } = state;
    const last_index = base.index + entries.length;
    if (first_index <= base.index || first_index > last_index + 1) {
      const after = base.index > 0 ? ` (it starts after index ${base.index})` : '';
      return (
        `entries start at index ${first_index} ` + `but the log ends at index ${last_index}${after}`
      );
    }
    entries.length = first_index - 1 - base.index;
    for (const entry of save.entries.entries) entries.push(entry);
  }
  if (save.hard_state !== null) state.hard_state = save.hard_state;
  state.save_records += 1;
  return null;
}

/**
 * Damage at `offset` is a torn tail only if no later write exists; otherwise the damage hit
 * durable data. An intact record past the damaged record's own extent proves a later write. Inside
 * that extent (a torn write's header, chained to the log, claims it) an intact-looking record may
 * be a client value embedding one, so there only a chain of intact records running to the end of
 * the file counts.
 */
async function refuseDamageBeforeTail(
  reader: ChunkReader,
  file_path: string,
  offset: number,
  prev_crc: number,
  damage: string,
): Promise<void> {
  const own_extent_end = await damagedRecordEnd(reader, offset, prev_crc);
  let intact_at: number | null = offset;
  do intact_at = await findIntactRecord(reader, intact_at + 1);
  while (
    intact_at !== null &&
    intact_at < own_extent_end &&
    !(await chainReachesEnd(reader, intact_at))
  );
  if (intact_at === null) return;
  throw new StorageCorruptError(
    `${file_path}: damaged record at byte offset ${offset} (${damage}), ` +
      `but an intact record starts at byte offset ${intact_at}: ` +
      'data written after the damage exists, so this is not a torn final write; ' +
      'refusing to truncate',
  );
}

/**
 * Where the damaged record at `offset` ends by its own header, if that header is plausible apart
 * from running past the end of the file and chains to the record before (a torn write's header
 * is written first); otherwise offset + 1 (nothing is known about its extent).
 */
async function damagedRecordEnd(
  reader: ChunkReader,
  offset: number,
  prev_crc: number,
): Promise<number> {
  if (reader.file_bytes - offset < RECORD_HEADER_BYTES) return offset + 1;
  const header_bytes = await reader.view(offset, RECORD_HEADER_BYTES);
  const header = parseRecordHeader(header_bytes, 0, Number.MAX_SAFE_INTEGER);
  if (typeof header === 'string' || header.prev_crc !== prev_crc) return offset + 1;
  return offset + RECORD_HEADER_BYTES + header.payload_bytes;
}

/**
 * Whether intact records, each chained to the one before, run from `at` to exactly the end of the
 * file. Only such a chain proves writes after the damage: a lone intact-looking record can be a
 * client value that embeds a well-formed record inside the torn write's payload.
 */
async function chainReachesEnd(reader: ChunkReader, at: number): Promise<boolean> {
  let position = at;
  let prev_crc: number | null = null;
  while (position < reader.file_bytes) {
    const intact = await readIntactRecord(reader, position);
    if (typeof intact === 'string') return false;
    if (prev_crc !== null && intact.header.prev_crc !== prev_crc) return false;
    prev_crc = intact.header.crc;
    position += intact.record.length;
  }
  return true;
}

/**
 * The first offset >= `from` where a complete record with a plausible header
 * and a matching CRC starts, or null. Its chain to what came before the damage
 * cannot be checked (the damaged record's crc is unknown); chainReachesEnd
 * checks the chain after it.
 */
async function findIntactRecord(reader: ChunkReader, from: number): Promise<number | null> {
  const file_bytes = reader.file_bytes;
  let start = from;
  while (start + RECORD_HEADER_BYTES <= file_bytes) {
    const window = await reader.view(start, RECORD_HEADER_BYTES);
    const last_header_at = window.length - RECORD_HEADER_BYTES;
    let next_start = start + last_header_at + 1;
    for (let i = 0; i <= last_header_at; i += 1) {
      const header = parseRecordHeader(window, i, file_bytes - (start + i));
      if (typeof header === 'string') continue;
      const record_bytes = RECORD_HEADER_BYTES + header.payload_bytes;
      if (i + record_bytes <= window.length) {
        if (recordCrcMatches(window.subarray(i, i + record_bytes))) return start + i;
        continue;
      }
      // The candidate runs past the window; reading it replaces the window, so resume the scan
      // after it.
      const record = await reader.view(start + i, record_bytes);
      if (recordCrcMatches(record.subarray(0, record_bytes))) return start + i;
      next_start = start + i + 1;
      break;
    }
    start = next_start;
  }
  return null;
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}
