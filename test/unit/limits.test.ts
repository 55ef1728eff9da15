/**
 * The relations between limits are asserted when their modules load; each check must fire on a
 * copy of LIMITS that breaks its relation (and pass on LIMITS itself, or nothing would load).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkSaveLimits } from '../../src/storage/payload';
import { AssertionFailure } from '../../src/util/assert';
import { checkLimitRelations, LIMITS, type Limits } from '../../src/util/limits';
import { checkFrameLimits } from '../../src/wire/codec';

const MiB = 1024 * 1024;

function broken(change: Partial<Record<keyof Limits, number>>): Limits {
  return { ...LIMITS, ...change } as Limits;
}

const CHECKS: [string, (limits: Limits) => void, Partial<Record<keyof Limits, number>>][] = [
  [
    'client read buffer below bulk + inline',
    checkLimitRelations,
    { client_read_buffer_bytes_max: LIMITS.resp_bulk_bytes_max + LIMITS.resp_inline_bytes_max - 1 },
  ],
  [
    'a log block smaller than an entry that goes into one',
    checkLimitRelations,
    { log_block_bytes: LIMITS.log_block_entry_bytes_max - 1 },
  ],
  [
    'inbound connections below 4 per peer of the largest cluster',
    checkLimitRelations,
    { cluster_nodes_max: LIMITS.peer_inbound_connections_max / 4 + 2 },
  ],
  [
    'a Ready smaller than one AppendEntries (count)',
    checkLimitRelations,
    { raft_ready_entries_max: LIMITS.raft_message_entries_max - 1 },
  ],
  [
    'a Ready smaller than one AppendEntries (bytes)',
    checkLimitRelations,
    { raft_ready_entries_bytes_max: LIMITS.raft_message_entries_bytes_max - 1 },
  ],
  [
    'a largest entry with its headers over the frame limit',
    checkFrameLimits,
    { raft_entry_bytes_max: LIMITS.raft_frame_payload_bytes_max - 28 - 8 + 1 },
  ],
  [
    'a full batch over the frame limit',
    checkFrameLimits,
    {
      raft_entry_bytes_max: 1000,
      raft_message_entries_bytes_max: LIMITS.raft_frame_payload_bytes_max,
    },
  ],
  [
    'a largest Ready save over the WAL record limit',
    checkSaveLimits,
    { raft_ready_entries_bytes_max: LIMITS.wal_record_bytes_max - LIMITS.raft_entry_bytes_max },
  ],
  [
    'a largest WAL record over the queue limit',
    checkSaveLimits,
    { wal_queued_bytes_max: 128 * MiB },
  ],
];

test('LIMITS satisfies every relation', () => {
  checkLimitRelations(LIMITS);
  checkFrameLimits(LIMITS);
  checkSaveLimits(LIMITS);
});

for (const [name, check, change] of CHECKS) {
  test(`fires on ${name}`, () => {
    assert.throws(() => check(broken(change)), AssertionFailure);
  });
}

test('the exact boundaries pass: an entry filling the frame, a save filling the record', () => {
  checkFrameLimits(broken({ raft_entry_bytes_max: LIMITS.raft_frame_payload_bytes_max - 28 - 8 }));
  const ready_bytes =
    LIMITS.wal_record_bytes_max -
    LIMITS.raft_entry_bytes_max -
    (4 + 12 + 8) -
    LIMITS.raft_ready_entries_max * 8;
  checkSaveLimits(broken({ raft_ready_entries_bytes_max: ready_bytes }));
  assert.throws(
    () => checkSaveLimits(broken({ raft_ready_entries_bytes_max: ready_bytes + 1 })),
    AssertionFailure,
  );
  assert.throws(
    () =>
      checkFrameLimits(broken({ raft_entry_bytes_max: LIMITS.raft_frame_payload_bytes_max - 35 })),
    AssertionFailure,
  );
});
