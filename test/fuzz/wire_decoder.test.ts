/**
 * Mutation fuzzing of the Raft frame decoder: valid streams with bytes flipped,
 * inserted, removed or truncated, fed in random chunks. WIRE_FUZZ_RUNS raises
 * the run count for a long session; FC_SEED=… FC_PATH=… replays a failure.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';

import { FrameDecoder, encodeMessage } from '../../src/wire/codec';
import { MessageType, type LogEntry, type RaftMessage } from '../../src/raft/protocol';
import { WireError } from '../../src/util/errors';
import { splitAt } from '../support/chunks';

const RUNS = Number(process.env.WIRE_FUZZ_RUNS ?? 1000);
const PARAMS: fc.Parameters<unknown> =
  process.env.FC_SEED === undefined
    ? { numRuns: RUNS }
    : { numRuns: RUNS, seed: Number(process.env.FC_SEED), path: process.env.FC_PATH ?? '' };

const record = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> =>
  fc.record(model, { noNullPrototype: true });
// Small values keep mutated length fields near plausible sizes, where decoding bugs hide.
const small = fc.integer({ min: -3, max: 300 });
const logEntry: fc.Arbitrary<LogEntry> = record({
  term: small,
  data: fc.uint8Array({ maxLength: 24 }),
});
const raftMessage: fc.Arbitrary<RaftMessage> = fc.oneof(
  record({
    type: fc.constantFrom(MessageType.RequestVoteRequest, MessageType.PreVoteRequest),
    term: small,
    candidate_id: small,
    last_log_index: small,
    last_log_term: small,
  }),
  record({
    type: fc.constantFrom(MessageType.RequestVoteResponse, MessageType.PreVoteResponse),
    term: small,
    vote_granted: fc.boolean(),
  }),
  record({
    type: fc.constant(MessageType.AppendEntriesRequest),
    term: small,
    leader_id: small,
    prev_log_index: small,
    prev_log_term: small,
    leader_commit: small,
    seq: small,
    entries: fc.array(logEntry, { maxLength: 5 }),
  }),
  record({
    type: fc.constant(MessageType.AppendEntriesResponse),
    term: small,
    follower_id: small,
    log_index: small,
    success: fc.boolean(),
    follower_commit: small,
    ack: small,
  }),
  record({ type: fc.constant(MessageType.TimeoutNow), term: small, leader_id: small }),
);

type Mutation =
  | { kind: 'set'; at: number; value: number }
  | { kind: 'insert'; at: number; value: number }
  | { kind: 'remove'; at: number }
  | { kind: 'truncate'; at: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  record({
    kind: fc.constant('set' as const),
    at: fc.nat(),
    value: fc.integer({ min: 0, max: 255 }),
  }),
  record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    value: fc.integer({ min: 0, max: 255 }),
  }),
  record({ kind: fc.constant('remove' as const), at: fc.nat() }),
  record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
);

function mutate(stream: Buffer, mutations: Mutation[]): Buffer {
  let bytes = Buffer.from(stream);
  for (const change of mutations) {
    const at = bytes.length === 0 ? 0 : change.at % bytes.length;
    switch (change.kind) {
      case 'set':
        if (bytes.length > 0) bytes[at] = change.value;
        break;
      case 'insert':
        bytes = Buffer.concat([
          bytes.subarray(0, at),
          Buffer.from([change.value]),
          bytes.subarray(at),
        ]);
        break;
      case 'remove':
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1)]);
        break;
      case 'truncate':
        bytes = bytes.subarray(0, at);
        break;
    }
  }
  return bytes;
}

describe('wire decoder mutation fuzzing', () => {
  it('mutated streams give messages or a WireError; what decodes re-encodes the same', () => {
    fc.assert(
      fc.property(
        fc.array(raftMessage, { minLength: 1, maxLength: 6 }),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (messages, mutations, cuts) => {
          const stream = mutate(Buffer.concat(messages.map(encodeMessage)), mutations);
          const decoder = new FrameDecoder({ payload_bytes_max: 64 * 1024 });
          const decoded: RaftMessage[] = [];
          try {
            for (const chunk of splitAt(stream, cuts)) decoded.push(...decoder.push(chunk));
          } catch (error) {
            assert.ok(error instanceof WireError, `non-WireError thrown: ${String(error)}`);
            return;
          }
          // The layout has exactly one encoding per message (strict bools, exact
          // sizes), so accepted bytes are exactly the encoding of what came out.
          const consumed = stream.length - decoder.buffered_bytes;
          assert.deepEqual(Buffer.concat(decoded.map(encodeMessage)), stream.subarray(0, consumed));
        },
      ),
      PARAMS,
    );
  });
});
