/**
 * Record framing of the write-ahead log (layout documented in raft_storage.ts):
 * a 16-byte header carrying the record's CRC, the previous record's CRC (the
 * chain), the payload length and the record type, then the payload.
 */
import * as zlib from 'node:zlib';
import { LIMITS } from '../util/limits';

export const RECORD_HEADER_BYTES = 16;

export const RecordType = {
  FileHeader: 1,
  Save: 2,
  /** The log starts after a snapshot: only as the second record (after the file header). */
  Base: 3,
} as const;

export type RecordTypeNumber = (typeof RecordType)[keyof typeof RecordType];

export const crc32: (data: Uint8Array, value?: number) => number = (() => {
  const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
  if (typeof native !== 'function') {
    throw new Error('node:zlib crc32 is missing: the write-ahead log needs Node.js >= 20.15');
  }
  return native;
})();

export interface RecordHeader {
  crc: number;
  prev_crc: number;
  payload_bytes: number;
  type: RecordTypeNumber;
}

/**
 * Allocates a record with room for `payload_bytes` of payload at RECORD_HEADER_BYTES; fill it, then
 * seal it.
 */
export function allocateRecord(payload_bytes: number): Buffer {
  return Buffer.alloc(RECORD_HEADER_BYTES + payload_bytes);
}

/** Writes the header of a record whose payload is already in place and returns its CRC. */
export function sealRecord(record: Buffer, type: RecordTypeNumber, prev_crc: number): number {
  record.writeUInt32LE(prev_crc >>> 0, 4);
  record.writeUInt32LE(record.length - RECORD_HEADER_BYTES, 8);
  record.writeUInt8(type, 12);
  record.fill(0, 13, RECORD_HEADER_BYTES);
  const crc = crc32(record.subarray(4));
  record.writeUInt32LE(crc, 0);
  return crc;
}

/**
 * Reads the header at `at` in `bytes` (which must hold RECORD_HEADER_BYTES
 * from there). Returns why it cannot start a record, or the header. A header is
 * plausible only if its type is known, its reserved bytes are zero and its
 * payload fits both the size limit and the `bytes_to_eof` remaining in the file.
 */
export function parseRecordHeader(
  bytes: Buffer,
  at: number,
  bytes_to_eof: number,
): RecordHeader | string {
  const type = bytes[at + 12];
  if (type !== RecordType.FileHeader && type !== RecordType.Save && type !== RecordType.Base)
    return `unknown record type ${String(type)}`;
  if (bytes[at + 13] !== 0 || bytes[at + 14] !== 0 || bytes[at + 15] !== 0)
    return 'non-zero reserved header bytes';
  const payload_bytes = bytes.readUInt32LE(at + 8);
  if (payload_bytes > LIMITS.wal_record_bytes_max) {
    return (
      `payload length ${payload_bytes} exceeds ` +
      `wal_record_bytes_max ${LIMITS.wal_record_bytes_max}`
    );
  }
  if (RECORD_HEADER_BYTES + payload_bytes > bytes_to_eof) {
    return `payload length ${payload_bytes} runs past the end of the file`;
  }
  return { crc: bytes.readUInt32LE(at), prev_crc: bytes.readUInt32LE(at + 4), payload_bytes, type };
}

/** True if `record` (header and payload, exactly) carries a CRC matching its contents. */
export function recordCrcMatches(record: Buffer): boolean {
  return crc32(record.subarray(4)) === record.readUInt32LE(0);
}
