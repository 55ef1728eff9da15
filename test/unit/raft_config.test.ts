/** buildRaftConfig: the one constructor of RaftConfig fills defaults and names each bad field. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildRaftConfig, type RaftConfigOptions } from '../../src/raft/config';
import { RaftConfigError } from '../../src/util/errors';
import { LIMITS } from '../../src/util/limits';
import { SeededRandom } from '../../src/util/prng';

const base = (): RaftConfigOptions => ({ id: 1, voters: [1, 2, 3], random: new SeededRandom(1) });

test('defaults: the server timing, PreVote and CheckQuorum on, the limits of limits.ts', () => {
  const config = buildRaftConfig(base());
  assert.equal(config.election_ticks, 10);
  assert.equal(config.heartbeat_ticks, 2);
  assert.equal(config.prevote, true);
  assert.equal(config.check_quorum, true);
  assert.equal(config.faults, undefined);
  assert.equal(config.limits.entry_bytes_max, LIMITS.raft_entry_bytes_max);
  assert.equal(config.limits.inflight_messages_max, LIMITS.raft_inflight_messages_max);
  assert.equal(
    config.limits.committed_entries_per_ready_max,
    LIMITS.raft_committed_entries_per_ready_max,
  );
});

test('overrides replace single limits and keep the rest', () => {
  const config = buildRaftConfig({ ...base(), limits: { inflight_messages_max: 3 } });
  assert.equal(config.limits.inflight_messages_max, 3);
  assert.equal(config.limits.message_entries_max, LIMITS.raft_message_entries_max);
});

test('every rule is a RaftConfigError naming its field', () => {
  const cases: [string, Partial<RaftConfigOptions>][] = [
    ['id', { id: 0 }],
    ['id', { id: 1.5 }],
    ['id', { id: 2 ** 31 }],
    ['voters', { voters: [2, 3] }],
    ['voters', { voters: [1, 2, 2] }],
    ['voters', { voters: [1, -2] }],
    ['election_ticks', { election_ticks: 1 }],
    ['heartbeat_ticks', { heartbeat_ticks: 0 }],
    ['heartbeat_ticks', { election_ticks: 5, heartbeat_ticks: 5 }],
    ['limits.inflight_messages_max', { limits: { inflight_messages_max: 0 } }],
    ['limits.pending_reads_max', { limits: { pending_reads_max: 2.5 } }],
    [
      'limits.message_entries_bytes_max',
      { limits: { entry_bytes_max: 1000, message_entries_bytes_max: 1009 } },
    ],
  ];
  for (const [field, change] of cases) {
    assert.throws(
      () => buildRaftConfig({ ...base(), ...change }),
      (error: unknown) => error instanceof RaftConfigError && error.field === field,
      `${JSON.stringify(change)} is refused as ${field}`,
    );
  }
  // The boundary of the last rule is allowed: a batch as large as one largest entry message.
  buildRaftConfig({
    ...base(),
    limits: { entry_bytes_max: 1000, message_entries_bytes_max: 1008 },
  });
  // No bootstrap voters: a node joining a running cluster learns the membership from its log.
  assert.deepEqual(buildRaftConfig({ ...base(), voters: [] }).voters, []);
});
