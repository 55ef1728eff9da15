/**
 * Payloads of the write-ahead log's records (layout documented in
 * raft_storage.ts): the file header (magic and format version) and one save
 * (optional hard state, optional entries to persist).
 */
import type { EntriesToPersist, HardState, SnapshotPoint } from '../raft/types';
import type { LogEntry } from '../raft/protocol';
import { assert } from '../util/assert';
import { LIMITS, type Limits } from '../util/limits';
import { allocateRecord, RECORD_HEADER_BYTES, RecordType, sealRecord } from './frame';

export const WAL_MAGIC = 'KVRAFTWL';
export const WAL_FORMAT_VERSION = 1;
const FILE_HEADER_PAYLOAD_BYTES = 16;

const FLAG_HARD_STATE = 1;
const FLAG_ENTRIES = 2;
const SAVE_FLAGS_BYTES = 4;
const HARD_STATE_BYTES = 12;
const ENTRIES_PREFIX_BYTES = 8;
const ENTRY_PREFIX_BYTES = 8;

/**
 * Asserts that the save of a largest Ready (hard state plus raft_ready_entries_max entries whose
 * data passes raft_ready_entries_bytes_max by at most one largest entry) fits one WAL record, and
 * that such a record can be queued. Runs when this module loads.
 */
export function checkSaveLimits(limits: Limits): void {
  const save_bytes_max =
    SAVE_FLAGS_BYTES +
    HARD_STATE_BYTES +
    ENTRIES_PREFIX_BYTES +
    limits.raft_ready_entries_max * ENTRY_PREFIX_BYTES +
    limits.raft_ready_entries_bytes_max +
    limits.raft_entry_bytes_max;
  assert(
    save_bytes_max <= limits.wal_record_bytes_max,
    `largest Ready save ${save_bytes_max} bytes fits wal_record_bytes_max ` +
      `${limits.wal_record_bytes_max}`,
  );
  assert(
    RECORD_HEADER_BYTES + limits.wal_record_bytes_max <= limits.wal_queued_bytes_max,
    `a largest WAL record fits wal_queued_bytes_max ${limits.wal_queued_bytes_max}`,
  );
}

checkSaveLimits(LIMITS);

export interface SealedRecord {
  bytes: Buffer;
  crc: number;
}

export interface DecodedSave {
  hard_state: HardState | null;
  entries: EntriesToPersist | null;
}

export function encodeFileHeader(): SealedRecord {
  const record = allocateRecord(FILE_HEADER_PAYLOAD_BYTES);
  record.write(WAL_MAGIC, RECORD_HEADER_BYTES, 'ascii');
  record.writeUInt32LE(WAL_FORMAT_VERSION, RECORD_HEADER_BYTES + 8);
  const crc = sealRecord(record, RecordType.FileHeader, 0);
  return { bytes: record, crc };
}

const BASE_PAYLOAD_BYTES = 8;

/** The base record: the log in this file starts after (index, term), which a snapshot covers. */
export function encodeBase(point: SnapshotPoint, prev_crc: number): SealedRecord {
  const record = allocateRecord(BASE_PAYLOAD_BYTES);
  record.writeUInt32LE(point.index, RECORD_HEADER_BYTES);
  record.writeUInt32LE(point.term, RECORD_HEADER_BYTES + 4);
  const crc = sealRecord(record, RecordType.Base, prev_crc);
  return { bytes: record, crc };
}

export function decodeBase(payload: Uint8Array): SnapshotPoint | string {
  if (payload.length !== BASE_PAYLOAD_BYTES)
    return `base payload is ${payload.length} bytes, expected ${BASE_PAYLOAD_BYTES}`;
  const view = asBuffer(payload);
  return { index: view.readUInt32LE(0), term: view.readUInt32LE(4) };
}

/** Returns null if the payload is a file header of the version we write, else what is wrong. */
export function checkFileHeader(payload: Uint8Array): string | null {
  if (payload.length !== FILE_HEADER_PAYLOAD_BYTES)
    return `file header payload is ${payload.length} bytes, expected ${FILE_HEADER_PAYLOAD_BYTES}`;
  const view = asBuffer(payload);
  const magic = view.toString('latin1', 0, 8);
  if (magic !== WAL_MAGIC)
    return `bad magic ${JSON.stringify(magic)}, expected ${JSON.stringify(WAL_MAGIC)}`;
  const version = view.readUInt32LE(8);
  if (version !== WAL_FORMAT_VERSION)
    return `unsupported format version ${version} (this build reads version ${WAL_FORMAT_VERSION})`;
  return null;
}

/** Bytes of the save payload; the caller checks it against wal_record_bytes_max before encoding. */
export function savePayloadBytes(
  hard_state: HardState | null,
  entries: EntriesToPersist | null,
): number {
  let bytes = SAVE_FLAGS_BYTES;
  if (hard_state !== null) bytes += HARD_STATE_BYTES;
  if (entries !== null) {
    bytes += ENTRIES_PREFIX_BYTES;
    for (const entry of entries.entries) bytes += ENTRY_PREFIX_BYTES + entry.data.length;
  }
  return bytes;
}

/**
 * Encodes one save as one sealed record chained to `prev_crc`. Numbers must already be validated as
 * uint32.
 */
export function encodeSave(
  hard_state: HardState | null,
  entries: EntriesToPersist | null,
  prev_crc: number,
): SealedRecord {
  const record = allocateRecord(savePayloadBytes(hard_state, entries));
  let at = RECORD_HEADER_BYTES;
  record.writeUInt8(
    (hard_state === null ? 0 : FLAG_HARD_STATE) | (entries === null ? 0 : FLAG_ENTRIES),
    at,
  );
  at += SAVE_FLAGS_BYTES;
  if (hard_state !== null) {
    at = record.writeUInt32LE(hard_state.term, at);
    at = record.writeUInt32LE(hard_state.vote, at);
    at = record.writeUInt32LE(hard_state.commit, at);
  }
  if (entries !== null) {
    at = record.writeUInt32LE(entries.first_index, at);
    at = record.writeUInt32LE(entries.entries.length, at);
    for (const entry of entries.entries) {
      at = record.writeUInt32LE(entry.term, at);
      at = record.writeUInt32LE(entry.data.length, at);
      record.set(entry.data, at);
      at += entry.data.length;
    }
  }
  const crc = sealRecord(record, RecordType.Save, prev_crc);
  return { bytes: record, crc };
}

/**
 * Decodes a save payload whose CRC already matched, copying entry data out
 * (the payload's buffer is reused by the reader). Returns what is wrong if
 * the payload is not a well-formed save.
 */
export function decodeSave(payload: Uint8Array): DecodedSave | string {
  const view = asBuffer(payload);
  if (view.length < SAVE_FLAGS_BYTES) return 'save payload shorter than its flags';
  const flags = view.readUInt8(0);
  if (
    (flags & ~(FLAG_HARD_STATE | FLAG_ENTRIES)) !== 0 ||
    view.readUInt8(1) !== 0 ||
    view.readUInt16LE(2) !== 0
  ) {
    return `unknown save flags 0x${view.readUInt32LE(0).toString(16)}`;
  }
  let at = SAVE_FLAGS_BYTES;
  let hard_state: HardState | null = null;
  if ((flags & FLAG_HARD_STATE) !== 0) {
    if (view.length < at + HARD_STATE_BYTES) return 'save payload ends inside the hard state';
    hard_state = {
      term: view.readUInt32LE(at),
      vote: view.readUInt32LE(at + 4),
      commit: view.readUInt32LE(at + 8),
    };
    at += HARD_STATE_BYTES;
  }
  let entries: EntriesToPersist | null = null;
  if ((flags & FLAG_ENTRIES) !== 0) {
    if (view.length < at + ENTRIES_PREFIX_BYTES)
      return 'save payload ends inside the entries prefix';
    const first_index = view.readUInt32LE(at);
    const count = view.readUInt32LE(at + 4);
    at += ENTRIES_PREFIX_BYTES;
    // Each entry takes at least its prefix, so a count the payload cannot hold is rejected before
    // allocating.
    if (count > (view.length - at) / ENTRY_PREFIX_BYTES)
      return `entry count ${count} does not fit the payload`;
    const list: LogEntry[] = [];
    for (let i = 0; i < count; i += 1) {
      if (view.length < at + ENTRY_PREFIX_BYTES) return `save payload ends inside entry ${i}`;
      const term = view.readUInt32LE(at);
      const data_bytes = view.readUInt32LE(at + 4);
      at += ENTRY_PREFIX_BYTES;
      if (view.length - at < data_bytes) return `entry ${i} data runs past the payload`;
      list.push({ term, data: Buffer.from(view.subarray(at, at + data_bytes)) });
      at += data_bytes;
    }
    entries = { first_index, entries: list };
  }
  if (at !== view.length) return `${view.length - at} unexpected bytes after the save`;
  return { hard_state, entries };
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}
