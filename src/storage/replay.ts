/**
 * Replays a write-ahead log file into the state a Raft node restarts from,
 * and decides where the valid log ends: a torn tail (the remains of the write
 * a crash interrupted) is reported for truncation; damage anywhere before it
 * is a StorageCorruptError. The rule is documented in raft_storage.ts.
 */
import type { HardState, RestoredState } from '../raft/types';
import { NO_NODE } from '../raft/types';
import type { LogEntry } from '../raft/protocol';
import { StorageCorruptError } from '../util/errors';
import { LIMITS } from '../util/limits';
import { ChunkReader } from './chunk_reader';
import { parseRecordHeader, RECORD_HEADER_BYTES, recordCrcMatches, RecordType } from './frame';
import type { LogFile } from './io';
import { checkFileHeader, decodeSave } from './payload';

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

export async function replayLog(file: LogFile, file_path: string): Promise<ReplayOutcome> {
  const file_bytes = await file.size();
  const reader = new ChunkReader(file, file_path, file_bytes, LIMITS.wal_replay_chunk_bytes);
  const entries: LogEntry[] = [];
  let hard_state: HardState = { term: 0, vote: NO_NODE, commit: 0 };
  let offset = 0;
  let prev_crc = 0;
  let save_records = 0;
  let damage: string | null = null;

  const corrupt = (problem: string): StorageCorruptError =>
    new StorageCorruptError(`${file_path}: record at byte offset ${offset}: ${problem}`);

  while (offset < file_bytes) {
    if (file_bytes - offset < RECORD_HEADER_BYTES) {
      damage = `only ${file_bytes - offset} bytes left, less than a record header`;
      break;
    }
    const header = parseRecordHeader(
      await reader.view(offset, RECORD_HEADER_BYTES),
      0,
      file_bytes - offset,
    );
    if (typeof header === 'string') {
      damage = header;
      break;
    }
    const record_bytes = RECORD_HEADER_BYTES + header.payload_bytes;
    const record = (await reader.view(offset, record_bytes)).subarray(0, record_bytes);
    if (!recordCrcMatches(record)) {
      damage = 'checksum mismatch';
      break;
    }
    // The record is intact, so a torn write cannot explain anything wrong with it from here on.
    if (header.prev_crc !== prev_crc) {
      throw corrupt(
        `breaks the checksum chain (its prev_crc is ${hex(header.prev_crc)}, the previous record's crc is ${hex(prev_crc)})`,
      );
    }
    const payload = record.subarray(RECORD_HEADER_BYTES);
    if (offset === 0) {
      if (header.type !== RecordType.FileHeader)
        throw corrupt('the first record is not a file header');
      const problem = checkFileHeader(payload);
      if (problem !== null) throw corrupt(problem);
    } else {
      if (header.type !== RecordType.Save)
        throw corrupt('a file header record after the start of the file');
      const save = decodeSave(payload);
      if (typeof save === 'string') throw corrupt(save);
      if (save.entries !== null) {
        const { first_index } = save.entries;
        if (first_index < 1 || first_index > entries.length + 1) {
          throw corrupt(
            `entries start at index ${first_index} but the log ends at index ${entries.length}`,
          );
        }
        entries.length = first_index - 1;
        for (const entry of save.entries.entries) entries.push(entry);
      }
      if (save.hard_state !== null) hard_state = save.hard_state;
      save_records += 1;
    }
    prev_crc = header.crc;
    offset += record_bytes;
  }

  if (damage !== null) {
    const intact_at = await findIntactRecord(reader, offset + 1);
    if (intact_at !== null) {
      throw new StorageCorruptError(
        `${file_path}: damaged record at byte offset ${offset} (${damage}), but an intact record starts at byte offset ${intact_at}: ` +
          'data written after the damage exists, so this is not a torn final write; refusing to truncate',
      );
    }
  }
  return {
    restored: { hard_state, entries },
    save_records,
    valid_bytes: offset,
    file_bytes,
    last_crc: prev_crc,
    torn_reason: damage,
  };
}

/**
 * The first offset >= `from` where a complete record with a plausible header
 * and a matching CRC starts, or null. Chaining is deliberately not required:
 * any intact record beyond damage proves a later write.
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
