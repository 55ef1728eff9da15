import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';

import { FRAME_HEADER_BYTES, FrameDecoder, encodeMessage } from '../../src/wire/codec';
import {
  isRequest,
  isResponse,
  LOG_ENTRY_HEADER_BYTES,
  MessageType,
  type LogEntry,
  type RaftMessage,
} from '../../src/raft/protocol';
import { AssertionFailure } from '../../src/util/assert';
import { WireError, type ErrorCode } from '../../src/util/errors';
import { LIMITS } from '../../src/util/limits';
import { splitAt } from '../support/chunks';
import { fcRuns } from '../support/fast_check';
import { appendEntriesRequest } from '../support/raft_messages';

/** Hex with spaces and line breaks allowed, so the golden frames can be laid out field by field. */
function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

function bytes(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'latin1'));
}

function decodeAll(chunks: Buffer[], options?: { payload_bytes_max?: number }): RaftMessage[] {
  const decoder = new FrameDecoder(options);
  const messages: RaftMessage[] = [];
  for (const chunk of chunks) messages.push(...decoder.push(chunk));
  assert.equal(decoder.buffered_bytes, 0, 'no bytes left over after a whole stream');
  return messages;
}

function byteByByte(stream: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < stream.length; at++) chunks.push(stream.subarray(at, at + 1));
  return chunks;
}

/** Feeds the chunks and returns the WireError code thrown, failing if none is. */
function decodeError(chunks: Buffer[], options?: { payload_bytes_max?: number }): ErrorCode {
  const decoder = new FrameDecoder(options);
  try {
    for (const chunk of chunks) decoder.push(chunk);
  } catch (error) {
    assert.ok(error instanceof WireError, `expected a WireError, got ${String(error)}`);
    return error.code;
  }
  assert.fail('expected the decoder to throw a WireError');
}

// Golden frames written by hand from the layouts, field by field, little-endian.
const GOLDEN: { name: string; frame: Buffer; message: RaftMessage }[] = [
  {
    name: 'RequestVoteRequest',
    frame: hex(`01000000 10000000
                05000000 02000000 0a000000 04000000`),
    message: {
      type: MessageType.RequestVoteRequest,
      term: 5,
      candidate_id: 2,
      last_log_index: 10,
      last_log_term: 4,
    },
  },
  {
    name: 'RequestVoteRequest with int32 extremes and the largest term',
    frame: hex(`01000000 10000000
                0000f07f 00000080 ffffffff 78563412`),
    message: {
      type: MessageType.RequestVoteRequest,
      term: LIMITS.raft_term_max,
      candidate_id: -2147483648,
      last_log_index: -1,
      last_log_term: 0x12345678,
    },
  },
  {
    name: 'RequestVoteResponse granted',
    frame: hex(`02000000 05000000
                07000000 01`),
    message: { type: MessageType.RequestVoteResponse, term: 7, vote_granted: true },
  },
  {
    name: 'AppendEntriesRequest with two entries',
    frame: hex(`03000000 2e000000
                03000000 01000000 09000000 02000000 08000000 2a000000 02000000
                03000000 02000000 6869
                03000000 00000000`),
    message: {
      type: MessageType.AppendEntriesRequest,
      term: 3,
      leader_id: 1,
      prev_log_index: 9,
      prev_log_term: 2,
      leader_commit: 8,
      seq: 42,
      entries: [
        { term: 3, data: bytes('hi') },
        { term: 3, data: new Uint8Array(0) },
      ],
    },
  },
  {
    name: 'AppendEntriesRequest heartbeat',
    frame: hex(`03000000 1c000000
                04000000 03000000 10000000 04000000 0f000000 00010000 00000000`),
    message: {
      type: MessageType.AppendEntriesRequest,
      term: 4,
      leader_id: 3,
      prev_log_index: 16,
      prev_log_term: 4,
      leader_commit: 15,
      seq: 256,
      entries: [],
    },
  },
  {
    name: 'AppendEntriesResponse',
    frame: hex(`04000000 15000000
                03000000 02000000 0b000000 01 08000000 2a000000`),
    message: {
      type: MessageType.AppendEntriesResponse,
      term: 3,
      follower_id: 2,
      log_index: 11,
      success: true,
      follower_commit: 8,
      ack: 42,
    },
  },
  {
    name: 'AppendEntriesResponse rejected',
    frame: hex(`04000000 15000000
                06000000 03000000 05000000 00 04000000 07000000`),
    message: {
      type: MessageType.AppendEntriesResponse,
      term: 6,
      follower_id: 3,
      log_index: 5,
      success: false,
      follower_commit: 4,
      ack: 7,
    },
  },
  {
    name: 'PreVoteRequest',
    frame: hex(`05000000 10000000
                06000000 01000000 0c000000 05000000`),
    message: {
      type: MessageType.PreVoteRequest,
      term: 6,
      candidate_id: 1,
      last_log_index: 12,
      last_log_term: 5,
    },
  },
  {
    name: 'PreVoteResponse refused',
    frame: hex(`06000000 05000000
                06000000 00`),
    message: { type: MessageType.PreVoteResponse, term: 6, vote_granted: false },
  },
  {
    name: 'TimeoutNow',
    frame: hex(`07000000 08000000
                09000000 01000000`),
    message: { type: MessageType.TimeoutNow, term: 9, leader_id: 1 },
  },
  {
    name: 'TransferVoteRequest',
    frame: hex(`08000000 10000000
                05000000 02000000 0a000000 04000000`),
    message: {
      type: MessageType.TransferVoteRequest,
      term: 5,
      candidate_id: 2,
      last_log_index: 10,
      last_log_term: 4,
    },
  },
  {
    name: 'InstallSnapshotRequest',
    frame: hex(`0d000000 2b000000
                07000000 01000000 e8030000 06000000
                00000400 00000000 01010500 01000000
                c2412435 03000000 616263`),
    message: {
      type: MessageType.InstallSnapshotRequest,
      term: 7,
      leader_id: 1,
      snapshot_index: 1000,
      snapshot_term: 6,
      offset: 262144,
      total_bytes: 4295295233,
      chunk_crc: 0x352441c2,
      data: bytes('abc'),
    },
  },
  {
    name: 'InstallSnapshotResponse',
    frame: hex(`0e000000 19000000
                07000000 03000000 e8030000 00
                00000800 00000000 00000000`),
    message: {
      type: MessageType.InstallSnapshotResponse,
      term: 7,
      follower_id: 3,
      snapshot_index: 1000,
      status: 0,
      next_offset: 524288,
      match_index: 0,
    },
  },
];

// Plain objects: fast-check's default records may have a null prototype, which deepEqual tells
// apart.
const record = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> =>
  fc.record(model, { noNullPrototype: true });

const int32 = fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff });
const term = fc.integer({ min: 0, max: LIMITS.raft_term_max });
const logEntry: fc.Arbitrary<LogEntry> = record({
  term,
  data: fc.uint8Array({ maxLength: 64 }),
});

const raftMessage: fc.Arbitrary<RaftMessage> = fc.oneof(
  record({
    type: fc.constantFrom(
      MessageType.RequestVoteRequest,
      MessageType.PreVoteRequest,
      MessageType.TransferVoteRequest,
    ),
    term,
    candidate_id: int32,
    last_log_index: int32,
    last_log_term: term,
  }),
  record({
    type: fc.constantFrom(MessageType.RequestVoteResponse, MessageType.PreVoteResponse),
    term,
    vote_granted: fc.boolean(),
  }),
  record({
    type: fc.constant(MessageType.AppendEntriesRequest),
    term,
    leader_id: int32,
    prev_log_index: int32,
    prev_log_term: term,
    leader_commit: int32,
    seq: int32,
    entries: fc.array(logEntry, { maxLength: 12 }),
  }),
  record({
    type: fc.constant(MessageType.AppendEntriesResponse),
    term,
    follower_id: int32,
    log_index: int32,
    success: fc.boolean(),
    follower_commit: int32,
    ack: int32,
  }),
  record({ type: fc.constant(MessageType.TimeoutNow), term, leader_id: int32 }),
  fc
    .record(
      {
        term,
        leader_id: int32,
        snapshot_index: fc.integer({ min: 1, max: 0x7fff_ffff }),
        snapshot_term: term,
        offset: fc.integer({ min: 0, max: LIMITS.snapshot_install_bytes_max - 64 }),
        extra: fc.integer({ min: 0, max: 1000 }),
        chunk_crc: fc.integer({ min: 0, max: 0xffff_ffff }),
        data: fc.uint8Array({ minLength: 1, maxLength: 64 }),
      },
      { noNullPrototype: true },
    )
    .map(
      ({ extra, ...m }): RaftMessage => ({
        type: MessageType.InstallSnapshotRequest,
        ...m,
        total_bytes: Math.min(LIMITS.snapshot_install_bytes_max, m.offset + m.data.length + extra),
      }),
    ),
  record({
    type: fc.constant(MessageType.InstallSnapshotResponse),
    term,
    follower_id: int32,
    snapshot_index: fc.integer({ min: 0, max: 0x7fff_ffff }),
    status: fc.constantFrom(0 as const, 1 as const, 2 as const),
    next_offset: fc.integer({ min: 0, max: LIMITS.snapshot_install_bytes_max }),
    match_index: fc.integer({ min: 0, max: 0x7fff_ffff }),
  }),
);

describe('wire codec golden frames', () => {
  for (const golden of GOLDEN) {
    it(`encodes ${golden.name} byte for byte`, () => {
      assert.deepEqual(encodeMessage(golden.message), golden.frame);
    });
    it(`decodes ${golden.name}`, () => {
      assert.deepEqual(decodeAll([golden.frame]), [golden.message]);
      assert.deepEqual(decodeAll(byteByByte(golden.frame)), [golden.message]);
    });
  }

  it('decodes all golden frames from one chunk, in order', () => {
    const stream = Buffer.concat(GOLDEN.map((golden) => golden.frame));
    assert.deepEqual(
      decodeAll([stream]),
      GOLDEN.map((golden) => golden.message),
    );
  });
});

describe('wire codec term bounds', () => {
  // Byte offset of every term field inside the frame, per golden message.
  const TERM_FIELDS: { name: string; message: RaftMessage; offsets: number[] }[] = [
    { name: 'RequestVoteRequest', message: GOLDEN[0]!.message, offsets: [8, 20] },
    {
      name: 'AppendEntriesRequest',
      message: appendEntriesRequest({ entries: [{ term: 1, data: bytes('x') }] }),
      offsets: [8, 20, 36],
    },
    {
      name: 'TimeoutNow',
      message: { type: MessageType.TimeoutNow, term: 9, leader_id: 1 },
      offsets: [8],
    },
  ];
  for (const { name, message, offsets } of TERM_FIELDS) {
    for (const offset of offsets) {
      for (const bad of [LIMITS.raft_term_max + 1, 0x7fff_ffff, -1]) {
        it(`refuses ${name} with term ${bad} at byte ${offset} as malformed`, () => {
          const frame = encodeMessage(message);
          frame.writeInt32LE(bad, offset);
          assert.equal(decodeError([frame]), 'WIRE_MALFORMED');
        });
      }
    }
  }

  it('accepts raft_term_max itself', () => {
    const message: RaftMessage = {
      type: MessageType.TimeoutNow,
      term: LIMITS.raft_term_max,
      leader_id: 1,
    };
    assert.deepEqual(decodeAll([encodeMessage(message)]), [message]);
  });
});

describe('wire codec sizes', () => {
  it('each entry adds LOG_ENTRY_HEADER_BYTES (8) plus its data to an AppendEntriesRequest', () => {
    assert.equal(LOG_ENTRY_HEADER_BYTES, 8);
    const empty = encodeMessage(appendEntriesRequest()).length;
    const one = encodeMessage(
      appendEntriesRequest({ entries: [{ term: 1, data: new Uint8Array(40) }] }),
    ).length;
    assert.equal(one - empty, LOG_ENTRY_HEADER_BYTES + 40);
  });

  it('FRAME_HEADER_BYTES is 8', () => {
    assert.equal(FRAME_HEADER_BYTES, 8);
  });

  it('every message type is exactly one of request and response', () => {
    const requests = [1, 3, 5, 7, 8, 13];
    for (const type of Object.values(MessageType)) {
      assert.equal(isRequest(type), requests.includes(type), `isRequest(${type})`);
      assert.equal(isResponse(type), !requests.includes(type), `isResponse(${type})`);
    }
  });
});

describe('wire codec InstallSnapshot hostile fields', () => {
  const request = GOLDEN.find((g) => g.name === 'InstallSnapshotRequest')!.frame;
  const response = GOLDEN.find((g) => g.name === 'InstallSnapshotResponse')!.frame;
  const edit = (frame: Buffer, change: (copy: Buffer) => void): Buffer => {
    const copy = Buffer.from(frame);
    change(copy);
    return copy;
  };
  const cases: { name: string; frame: Buffer; code: ErrorCode }[] = [
    {
      name: 'snapshot_index 0',
      frame: edit(request, (f) => f.writeInt32LE(0, 16)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'snapshot_term above the term limit',
      frame: edit(request, (f) => f.writeInt32LE(-1, 20)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'offset above 2^53',
      frame: edit(request, (f) => f.writeUInt32LE(0xffff_ffff, 28)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'chunk beyond total_bytes',
      frame: edit(request, (f) => {
        f.writeUInt32LE(5, 32);
        f.writeUInt32LE(0, 36);
      }),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'total_bytes above snapshot_install_bytes_max',
      frame: edit(request, (f) => f.writeUInt32LE(0x10_0000, 36)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'data_length not the payload rest',
      frame: edit(request, (f) => f.writeUInt32LE(4, 44)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'no data',
      frame: edit(request.subarray(0, 48), (f) => {
        f.writeUInt32LE(40, 4);
        f.writeUInt32LE(0, 44);
      }),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'payload shorter than the header',
      frame: edit(request.subarray(0, 20), (f) => f.writeUInt32LE(12, 4)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'response status 3',
      frame: edit(response, (f) => (f[20] = 3)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'response next_offset above the maximum',
      frame: edit(response, (f) => f.writeUInt32LE(0x10_0000, 25)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'response negative match_index',
      frame: edit(response, (f) => f.writeInt32LE(-1, 29)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'response of the wrong size',
      frame: edit(response.subarray(0, 32), (f) => f.writeUInt32LE(24, 4)),
      code: 'WIRE_MALFORMED',
    },
  ];
  for (const { name, frame, code } of cases) {
    it(`refuses ${name}`, () => {
      assert.equal(decodeError([frame]), code);
    });
  }

  it('refuses a chunk above snapshot_chunk_bytes_max from its header alone', () => {
    const header = Buffer.alloc(8);
    header.writeUInt32LE(MessageType.InstallSnapshotRequest, 0);
    header.writeUInt32LE(40 + LIMITS.snapshot_chunk_bytes_max + 1, 4);
    assert.equal(decodeError([header]), 'WIRE_FRAME_TOO_LARGE');
  });

  it('accepts a largest chunk', () => {
    const message: RaftMessage = {
      type: MessageType.InstallSnapshotRequest,
      term: 1,
      leader_id: 1,
      snapshot_index: 9,
      snapshot_term: 1,
      offset: 0,
      total_bytes: LIMITS.snapshot_chunk_bytes_max,
      chunk_crc: 0,
      data: new Uint8Array(LIMITS.snapshot_chunk_bytes_max),
    };
    assert.deepEqual(decodeAll([encodeMessage(message)]), [message]);
  });
});

describe('wire codec round trips', () => {
  it('decode(encode(m)) equals m for random messages of every type', () => {
    fc.assert(
      fc.property(raftMessage, (message) => {
        assert.deepEqual(decodeAll([encodeMessage(message)]), [message]);
      }),
      fcRuns(2000),
    );
  });

  it('any chunking of a stream of many frames decodes to the same messages', () => {
    fc.assert(
      fc.property(
        fc.array(raftMessage, { minLength: 1, maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 60 }),
        (messages, cuts) => {
          const stream = Buffer.concat(messages.map(encodeMessage));
          assert.deepEqual(decodeAll(splitAt(stream, cuts)), messages);
        },
      ),
      fcRuns(500),
    );
  });

  it('a stream fed byte by byte decodes to the same messages', () => {
    fc.assert(
      fc.property(fc.array(raftMessage, { minLength: 1, maxLength: 20 }), (messages) => {
        const stream = Buffer.concat(messages.map(encodeMessage));
        assert.deepEqual(decodeAll(byteByByte(stream)), messages);
      }),
      fcRuns(100),
    );
  });

  it('a frame larger than a network chunk decodes across 64 KiB chunks and byte by byte', () => {
    const entries: LogEntry[] = [];
    for (let index = 0; index < 300; index++) {
      entries.push({ term: index, data: new Uint8Array(1000 + index).fill(index & 0xff) });
    }
    const message = appendEntriesRequest({ entries });
    const stream = Buffer.concat([encodeMessage(message), encodeMessage(message)]);
    const chunks: Buffer[] = [];
    for (let at = 0; at < stream.length; at += 64 * 1024)
      chunks.push(stream.subarray(at, at + 64 * 1024));
    assert.deepEqual(decodeAll(chunks), [message, message]);
    assert.deepEqual(decodeAll(byteByByte(stream)), [message, message]);
  });

  it('buffered_bytes counts the bytes of the incomplete frame', () => {
    const frame = GOLDEN[0]!.frame;
    const decoder = new FrameDecoder();
    assert.deepEqual(decoder.push(frame.subarray(0, 3)), []);
    assert.equal(decoder.buffered_bytes, 3);
    assert.deepEqual(decoder.push(frame.subarray(3, 20)), []);
    assert.equal(decoder.buffered_bytes, 20);
    assert.equal(decoder.push(Buffer.concat([frame.subarray(20), frame.subarray(0, 5)])).length, 1);
    assert.equal(decoder.buffered_bytes, 5);
    assert.equal(decoder.push(frame.subarray(5)).length, 1);
    assert.equal(decoder.buffered_bytes, 0);
  });

  it('decoded entry data is a copy with its own memory, not a view into the chunk', () => {
    const frame = encodeMessage(
      appendEntriesRequest({ entries: [{ term: 2, data: bytes('SET key value') }] }),
    );
    const chunk = Buffer.concat([frame, Buffer.alloc(64 * 1024 - frame.length)]).subarray(
      0,
      frame.length,
    );
    const [message] = new FrameDecoder().push(chunk);
    assert.ok(message !== undefined && message.type === MessageType.AppendEntriesRequest);
    const data = message.entries[0]!.data;
    chunk.fill(0xee);
    assert.deepEqual(data, bytes('SET key value'));
    assert.equal(data.byteOffset, 0);
    assert.equal(data.buffer.byteLength, data.length);
  });
});

describe('wire codec malformed input', () => {
  const header = (type: number, payload_bytes: number): Buffer => {
    const bytes_out = Buffer.alloc(8);
    bytes_out.writeUInt32LE(type, 0);
    bytes_out.writeUInt32LE(payload_bytes, 4);
    return bytes_out;
  };
  /** AppendEntriesRequest fixed fields with the given entry_count, followed by `rest`. */
  const appendEntriesPayload = (entry_count: number, rest: Buffer): Buffer => {
    const fixed = Buffer.alloc(28);
    fixed.writeUInt32LE(entry_count, 24);
    return Buffer.concat([fixed, rest]);
  };
  const frameOf = (type: number, payload: Buffer): Buffer =>
    Buffer.concat([header(type, payload.length), payload]);
  const entryOf = (data_length: number, data: Buffer): Buffer => {
    const entry_header = Buffer.alloc(8);
    entry_header.writeUInt32LE(data_length, 4);
    return Buffer.concat([entry_header, data]);
  };

  const CASES: { name: string; stream: Buffer; code: ErrorCode; payload_bytes_max?: number }[] = [
    { name: 'type 0', stream: frameOf(0, Buffer.alloc(16)), code: 'WIRE_UNKNOWN_TYPE' },
    { name: 'type 40', stream: frameOf(40, Buffer.alloc(8)), code: 'WIRE_UNKNOWN_TYPE' },
    { name: 'type 0xffffffff', stream: header(0xffffffff, 0), code: 'WIRE_UNKNOWN_TYPE' },
    {
      name: 'RequestVoteRequest payload too short',
      stream: frameOf(1, Buffer.alloc(15)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'RequestVoteRequest bytes left over',
      stream: frameOf(1, Buffer.alloc(17)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'RequestVoteResponse payload too short',
      stream: frameOf(2, Buffer.alloc(4)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'PreVoteResponse bytes left over',
      stream: frameOf(6, Buffer.alloc(6)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'AppendEntriesResponse payload too short',
      stream: frameOf(4, Buffer.alloc(20)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'TimeoutNow bytes left over',
      stream: frameOf(7, Buffer.alloc(9)),
      code: 'WIRE_MALFORMED',
    },
    { name: 'empty payload', stream: frameOf(5, Buffer.alloc(0)), code: 'WIRE_MALFORMED' },
    {
      name: 'AppendEntriesRequest shorter than its fixed fields',
      stream: frameOf(3, Buffer.alloc(27)),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'entry_count larger than the entries present',
      stream: frameOf(
        3,
        appendEntriesPayload(
          3,
          Buffer.concat([entryOf(2, Buffer.from('hi')), entryOf(0, Buffer.alloc(0))]),
        ),
      ),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'entry_count 0xffffffff in a small payload',
      stream: frameOf(3, appendEntriesPayload(0xffffffff, entryOf(0, Buffer.alloc(0)))),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'entry header cut off at the end of the payload',
      stream: frameOf(
        3,
        appendEntriesPayload(2, Buffer.concat([entryOf(1, Buffer.from('x')), Buffer.alloc(7)])),
      ),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'entry data_length overruns the payload',
      stream: frameOf(3, appendEntriesPayload(1, entryOf(10, Buffer.from('short')))),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'entry data_length 0xffffffff',
      stream: frameOf(3, appendEntriesPayload(1, entryOf(0xffffffff, Buffer.alloc(4)))),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'trailing bytes after the entries',
      stream: frameOf(
        3,
        appendEntriesPayload(1, Buffer.concat([entryOf(2, Buffer.from('hi')), Buffer.from([0])])),
      ),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'trailing bytes after zero entries',
      stream: frameOf(3, appendEntriesPayload(0, Buffer.alloc(8))),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'vote_granted byte 2',
      stream: hex('02000000 05000000 07000000 02'),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'vote_granted byte 0xff',
      stream: hex('06000000 05000000 07000000 ff'),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'success byte 2',
      stream: hex('04000000 15000000 03000000 02000000 0b000000 02 08000000 2a000000'),
      code: 'WIRE_MALFORMED',
    },
    {
      name: 'payload above a configured maximum',
      stream: frameOf(3, appendEntriesPayload(1, entryOf(80, Buffer.alloc(80)))),
      code: 'WIRE_FRAME_TOO_LARGE',
      payload_bytes_max: 100,
    },
    {
      name: 'payload one byte above the default maximum',
      stream: header(3, LIMITS.raft_frame_payload_bytes_max + 1),
      code: 'WIRE_FRAME_TOO_LARGE',
    },
    {
      name: 'fixed-size type claiming a huge payload',
      stream: header(1, 0xffffffff),
      code: 'WIRE_FRAME_TOO_LARGE',
    },
  ];

  for (const bad of CASES) {
    const options =
      bad.payload_bytes_max === undefined
        ? undefined
        : { payload_bytes_max: bad.payload_bytes_max };
    it(`${bad.name} is ${bad.code}`, () => {
      assert.equal(decodeError([bad.stream], options), bad.code);
      assert.equal(decodeError(byteByByte(bad.stream), options), bad.code);
    });
    it(`${bad.name} is ${bad.code} after valid frames, for any chunking`, () => {
      fc.assert(
        fc.property(
          fc.array(raftMessage, { maxLength: 8 }),
          fc.array(fc.nat(), { maxLength: 20 }),
          (messages, cuts) => {
            const stream = Buffer.concat([...messages.map(encodeMessage), bad.stream]);
            const decoder = new FrameDecoder(options);
            const decoded: RaftMessage[] = [];
            try {
              for (const chunk of splitAt(stream, cuts)) decoded.push(...decoder.push(chunk));
            } catch (error) {
              assert.ok(error instanceof WireError);
              assert.equal(error.code, bad.code);
              // Messages decoded before the bad frame are exactly the good ones, in order (some may
              // be dropped with the failing chunk).
              assert.deepEqual(decoded, messages.slice(0, decoded.length));
              return;
            }
            assert.fail('expected a WireError');
          },
        ),
        fcRuns(50),
      );
    });
  }

  it('a header claiming 1 GiB is rejected at once, without waiting for its bytes', () => {
    const decoder = new FrameDecoder();
    assert.throws(
      () => decoder.push(header(MessageType.AppendEntriesRequest, 1024 * 1024 * 1024)),
      (error: unknown) => error instanceof WireError && error.code === 'WIRE_FRAME_TOO_LARGE',
    );
  });

  it('a header split across chunks is checked as soon as its eighth byte arrives', () => {
    const decoder = new FrameDecoder();
    const huge = header(MessageType.AppendEntriesRequest, 1024 * 1024 * 1024);
    for (let at = 0; at < 7; at++) assert.deepEqual(decoder.push(huge.subarray(at, at + 1)), []);
    assert.throws(() => decoder.push(huge.subarray(7)), WireError);
  });

  it('the decoder is unusable after a throw', () => {
    const decoder = new FrameDecoder();
    assert.throws(() => decoder.push(header(9, 0)), WireError);
    assert.throws(() => decoder.push(GOLDEN[0]!.frame), WireError);
  });

  it('an allowed but not yet received payload is not allocated up front', () => {
    const claimed_bytes = 60 * 1024 * 1024;
    const decoder = new FrameDecoder();
    const array_buffers_before = process.memoryUsage().arrayBuffers;
    assert.deepEqual(
      decoder.push(
        Buffer.concat([
          header(MessageType.AppendEntriesRequest, claimed_bytes),
          Buffer.alloc(1024),
        ]),
      ),
      [],
    );
    assert.equal(decoder.buffered_bytes, 8 + 1024);
    const grown_bytes = process.memoryUsage().arrayBuffers - array_buffers_before;
    assert.ok(grown_bytes < claimed_bytes / 4, `array buffers grew by ${grown_bytes} bytes`);
  });

  it('random garbage, in random chunks, never throws anything but a WireError', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 512 }),
        fc.array(fc.nat(), { maxLength: 16 }),
        (garbage, cuts) => {
          const decoder = new FrameDecoder({ payload_bytes_max: 4096 });
          try {
            for (const chunk of splitAt(Buffer.from(garbage), cuts)) decoder.push(chunk);
          } catch (error) {
            assert.ok(error instanceof WireError, `non-WireError thrown: ${String(error)}`);
          }
        },
      ),
      fcRuns(2000),
    );
  });

  it('garbage after a plausible header never throws anything but a WireError', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 9 }),
        fc.uint8Array({ maxLength: 256 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (type, payload, cuts) => {
          const stream = Buffer.concat([header(type, payload.length), payload]);
          const decoder = new FrameDecoder();
          try {
            for (const chunk of splitAt(stream, cuts)) decoder.push(chunk);
          } catch (error) {
            assert.ok(error instanceof WireError, `non-WireError thrown: ${String(error)}`);
          }
        },
      ),
      fcRuns(3000),
    );
  });
});

describe('wire codec encoding checks', () => {
  const base: RaftMessage = { type: MessageType.TimeoutNow, term: 1, leader_id: 1 };
  for (const bad_term of [2 ** 31, -(2 ** 31) - 1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    it(`refuses term ${bad_term}, which does not fit an int32`, () => {
      assert.throws(() => encodeMessage({ ...base, term: bad_term }), AssertionFailure);
    });
  }

  it('refuses an entry term that does not fit an int32', () => {
    assert.throws(
      () =>
        encodeMessage(
          appendEntriesRequest({ entries: [{ term: 2 ** 31, data: new Uint8Array(1) }] }),
        ),
      AssertionFailure,
    );
  });

  it('refuses a message whose payload exceeds raft_frame_payload_bytes_max', () => {
    const data = new Uint8Array(LIMITS.raft_frame_payload_bytes_max);
    assert.throws(
      () => encodeMessage(appendEntriesRequest({ entries: [{ term: 1, data }] })),
      AssertionFailure,
    );
  });

  it('refuses an unknown message type', () => {
    const unknown = { type: 42, term: 1 } as unknown as RaftMessage;
    assert.throws(() => encodeMessage(unknown), AssertionFailure);
  });
});
