/**
 * The shared Ready driver (src/driver/ready_driver.ts): the order in which it
 * carries out a Ready, the commit-only save it defers, its yielding, its
 * failure state, and the bound on one save's size.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type DriverFaults, ReadyDriver } from '../../src/driver/ready_driver';
import { buildRaftConfig } from '../../src/raft/config';
import { RaftCore } from '../../src/raft/core';
import type {
  EntriesToPersist,
  HardState,
  NodeId,
  RaftLimits,
  RestoredState,
} from '../../src/raft/types';
import { Replica } from '../../src/replica/replica';
import { savePayloadBytes } from '../../src/storage/payload';
import { encodeCommand } from '../../src/kv/command_codec';
import { LIMITS } from '../../src/util/limits';
import { SeededRandom } from '../../src/util/prng';
import { MessageType, type RaftMessage } from '../../src/raft/protocol';

interface PendingSave {
  hard_state: HardState | null;
  entries: EntriesToPersist | null;
  done: (error: Error | null) => void;
}

/** A driver over a disk whose saves complete only when the test says so. */
class Harness {
  readonly saves: PendingSave[] = [];
  readonly sent: Array<{ to: NodeId; message: RaftMessage }> = [];
  readonly deferred: Array<() => void> = [];
  readonly driver: ReadyDriver;
  readonly replica: Replica;
  fatal: Error | null = null;

  constructor(
    readonly core: RaftCore,
    faults: DriverFaults = {},
    readies_per_turn_max = 8,
  ) {
    this.replica = new Replica(core);
    this.driver = new ReadyDriver(
      core,
      this.replica,
      { save: (hard_state, entries, done) => this.saves.push({ hard_state, entries, done }) },
      { send: (to, message) => this.sent.push({ to, message }) },
      { defer: (run) => this.deferred.push(run) },
      { readies_per_turn_max, faults },
      {
        onFatal: (error) => {
          this.fatal = error;
        },
      },
    );
  }

  runDeferred(): void {
    while (this.deferred.length > 0) this.deferred.shift()!();
  }

  completeSave(error: Error | null = null): PendingSave {
    const save = this.saves.shift();
    assert.ok(save !== undefined, 'a save is in flight');
    save.done(error);
    return save;
  }
}

function makeCore(
  id: NodeId,
  voters: NodeId[],
  restored?: RestoredState,
  limits: Partial<RaftLimits> = {},
): RaftCore {
  return new RaftCore(
    buildRaftConfig({ id, voters, random: new SeededRandom(id), limits }),
    restored ?? { hard_state: { term: 0, vote: 0, commit: 0 }, entries: [] },
  );
}

function voteRequest(term: number, candidate_id: NodeId): RaftMessage {
  return {
    type: MessageType.RequestVoteRequest,
    term,
    candidate_id,
    last_log_index: 0,
    last_log_term: 0,
  };
}

function append(
  term: number,
  prev_log_index: number,
  data: Uint8Array[],
  seq: number,
  leader_commit = 0,
): RaftMessage {
  return {
    type: MessageType.AppendEntriesRequest,
    term,
    leader_id: 1,
    prev_log_index,
    prev_log_term: prev_log_index === 0 ? 0 : term,
    leader_commit,
    seq,
    entries: data.map((d) => ({ term, data: d })),
  };
}

test('a vote is sent only after the save that holds it completes', () => {
  const h = new Harness(makeCore(3, [1, 2, 3]));
  h.driver.step(1, voteRequest(1, 1));
  h.runDeferred();
  assert.equal(h.saves.length, 1);
  assert.deepEqual(h.saves[0]!.hard_state, { term: 1, vote: 1, commit: 0 });
  assert.equal(h.sent.length, 0, 'no reply before the vote is durable');
  h.completeSave();
  assert.equal(h.sent.length, 1);
  const reply = h.sent[0]!.message;
  assert.equal(reply.type === MessageType.RequestVoteResponse && reply.vote_granted, true);
});

test('test switch send_before_persist sends the vote before its save completes', () => {
  const h = new Harness(makeCore(3, [1, 2, 3]), { send_before_persist: true });
  h.driver.step(1, voteRequest(1, 1));
  h.runDeferred();
  assert.equal(h.saves.length, 1);
  assert.equal(h.sent.length, 1, 'the broken driver replies while the save is in flight');
});

test('a follower acknowledges appended entries only after they are durable', () => {
  const h = new Harness(makeCore(2, [1, 2, 3]));
  h.driver.step(1, append(1, 0, [Buffer.from([])], 1));
  h.runDeferred();
  assert.equal(h.saves.length, 1);
  assert.equal(h.saves[0]!.entries?.entries.length, 1);
  assert.equal(h.sent.length, 0);
  h.completeSave();
  const reply = h.sent[0]!.message;
  assert.ok(reply.type === MessageType.AppendEntriesResponse && reply.success);
});

test('one save in flight: later Readies wait for it, then go out in order', () => {
  const h = new Harness(makeCore(2, [1, 2, 3]));
  h.driver.step(1, append(1, 0, [Buffer.from([])], 1));
  h.runDeferred();
  h.driver.step(1, append(1, 1, [Buffer.from([])], 2));
  h.runDeferred();
  assert.equal(h.saves.length, 1, 'the second batch waits for the first fsync');
  h.completeSave();
  assert.equal(h.saves.length, 1, 'the next save starts when the first completes');
  assert.equal(h.saves[0]!.entries?.first_index, 2);
  h.completeSave();
  assert.equal(h.sent.length, 2);
});

test('a change of the commit index alone is not saved by itself; it rides on the next save', () => {
  const h = new Harness(makeCore(2, [1, 2, 3]));
  h.driver.step(1, append(1, 0, [Buffer.from([])], 1));
  h.runDeferred();
  h.completeSave();
  h.driver.step(1, append(1, 1, [], 2, 1)); // heartbeat carrying commit 1
  h.runDeferred();
  assert.equal(h.saves.length, 0, 'no fsync for a commit index alone');
  assert.equal(h.sent.length, 2, 'its reply needs no save');
  assert.deepEqual(h.driver.unsaved_hard_state, { term: 1, vote: 0, commit: 1 });
  h.driver.step(1, append(1, 1, [Buffer.from([])], 3, 1));
  h.runDeferred();
  assert.deepEqual(h.saves[0]!.hard_state, { term: 1, vote: 0, commit: 1 }, 'carried along');
  assert.equal(h.driver.unsaved_hard_state, null);
});

test('a failed save stops the driver: nothing more is sent or saved', () => {
  const h = new Harness(makeCore(2, [1, 2, 3]));
  h.driver.step(1, append(1, 0, [Buffer.from([])], 1));
  h.runDeferred();
  h.completeSave(new Error('EIO'));
  assert.equal(h.driver.state, 'failed');
  assert.equal(h.fatal?.message, 'EIO');
  assert.equal(h.sent.length, 0, 'the unsaved entries are never acknowledged');
  h.driver.step(1, append(1, 0, [Buffer.from([])], 2));
  h.runDeferred();
  assert.equal(h.saves.length, 0);
});

test('at most readies_per_turn_max Readies run back to back; the rest after a yield', () => {
  const entries = Array.from({ length: 40 }, () => ({ term: 1, data: new Uint8Array(0) }));
  const restored = { hard_state: { term: 1, vote: 1, commit: 40 }, entries };
  const core = makeCore(1, [1], restored, { committed_entries_per_ready_max: 4 });
  const h = new Harness(core, {}, 2);
  h.driver.schedule();
  assert.equal(h.deferred.length, 1);
  h.deferred.shift()!();
  assert.equal(h.deferred.length, 1, 'yielded after two Readies, with a pump scheduled');
  let turns = 1;
  while (h.deferred.length > 0) {
    turns++;
    h.deferred.shift()!();
  }
  assert.ok(turns >= 5, `40 entries, 4 per Ready, 2 Readies per turn: ${turns} turns`);
  assert.equal(h.replica.state.last_applied, 40);
});

test('catching up on 8 MiB entries behind a slow fsync: every save fits a WAL record', () => {
  const h = new Harness(makeCore(2, [1, 2, 3]));
  const big = encodeCommand({
    op: 'set',
    key: Buffer.from('k'),
    words: [Buffer.alloc(8 * 1024 * 1024)],
  });
  const count = 40; // 320 MiB arrive while the first save is still running
  h.driver.step(1, append(1, 0, [big], 1));
  h.runDeferred();
  // The leader's commit index runs ahead of what this follower has saved.
  for (let i = 1; i < count; i++) h.driver.step(1, append(1, i, [big], i + 1, i));
  h.runDeferred();
  let saved = 0;
  while (h.saves.length > 0) {
    const save = h.saves[0]!;
    const bytes = savePayloadBytes(save.hard_state, save.entries);
    assert.ok(bytes <= LIMITS.wal_record_bytes_max, `save of ${bytes} bytes fits a WAL record`);
    saved += save.entries?.entries.length ?? 0;
    const commit = save.hard_state?.commit ?? 0;
    assert.ok(commit <= saved, `saved commit ${commit} never passes the ${saved} saved entries`);
    h.completeSave();
    h.runDeferred();
  }
  assert.equal(saved, count, 'every entry was saved, in bounded batches');
  const last = h.sent.at(-1)!.message;
  assert.ok(last.type === MessageType.AppendEntriesResponse && last.log_index === count);
});
