/**
 * WAL compaction and restart from a snapshot: the log rewritten to start after a snapshot point,
 * saves before and after the rewrite kept in order, restart dropping what the snapshot covers,
 * fallback past a damaged newest snapshot, and a clear error when no file reaches back far enough.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { LogEntry } from '../../src/raft/protocol';
import { RaftStorage } from '../../src/storage';
import { snapshotFileName } from '../../src/storage/snapshot_store';
import { StorageCorruptError } from '../../src/util/errors';

const entry = (index: number, term = 1): LogEntry => ({
  term,
  data: Buffer.alloc(100, index & 0xff),
});
const range = (from: number, to: number): LogEntry[] => {
  const out: LogEntry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i));
  return out;
};

async function logWith(dir: string, last: number): Promise<RaftStorage> {
  const { storage } = await RaftStorage.open(dir);
  await storage.save(
    { term: 1, vote: 1, commit: last },
    { first_index: 1, entries: range(1, last) },
  );
  return storage;
}

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'kv-compact-'));
}

test('after a compaction the log restarts after the snapshot, with later saves', async () => {
  const dir = tempDir();
  const storage = await logWith(dir, 100);
  const before = fs.statSync(path.join(dir, 'raft.wal')).size;
  await storage.snapshots.write({ index: 90, term: 1, voters: [1, 2, 3] }, Buffer.from('state'));
  const compacting = storage.compactLog({ index: 90, term: 1 }, range(91, 100));
  const saving = storage.save(
    { term: 2, vote: 1, commit: 101 },
    {
      first_index: 101,
      entries: [entry(101, 2)],
    },
  );
  await Promise.all([compacting, saving]);
  await storage.close();
  assert.ok(fs.statSync(path.join(dir, 'raft.wal')).size < before / 5, 'the WAL shrank');
  const reopened = await RaftStorage.open(dir);
  assert.deepEqual(reopened.restored.snapshot, { index: 90, term: 1 });
  assert.deepEqual(reopened.restored.hard_state, { term: 2, vote: 1, commit: 101 });
  assert.deepEqual(reopened.restored.entries, [...range(91, 100), entry(101, 2)]);
  assert.equal(reopened.snapshot?.state.toString(), 'state');
  assert.deepEqual(reopened.snapshot?.meta.voters, [1, 2, 3]);
  await reopened.storage.save(null, { first_index: 102, entries: [entry(102, 2)] });
  await reopened.storage.close();
  const again = await RaftStorage.open(dir);
  assert.equal(again.restored.entries.length, 12);
  await again.storage.close();
});

test('a snapshot newer than the WAL base: state restarts at it, the log at the base', async () => {
  const dir = tempDir();
  const storage = await logWith(dir, 50);
  await storage.snapshots.write({ index: 20, term: 1, voters: [1] }, Buffer.from('s20'));
  await storage.compactLog({ index: 20, term: 1 }, range(21, 50));
  await storage.snapshots.write({ index: 40, term: 1, voters: [1] }, Buffer.from('s40'));
  await storage.close();
  const reopened = await RaftStorage.open(dir);
  // The log keeps what the newer snapshot covers: as leader this node may still need it.
  assert.deepEqual(reopened.restored.snapshot, { index: 20, term: 1 });
  assert.equal(reopened.restored.applied_index, 40);
  assert.equal(reopened.snapshot?.state.toString(), 's40');
  assert.deepEqual(reopened.restored.entries, range(21, 50));
  await reopened.storage.close();
});

test('a snapshot ahead of the log restarts the log after it', async () => {
  const dir = tempDir();
  const storage = await logWith(dir, 10);
  await storage.snapshots.write({ index: 30, term: 3, voters: [1] }, Buffer.from('s30'));
  await storage.close();
  const reopened = await RaftStorage.open(dir);
  assert.deepEqual(reopened.restored.snapshot, { index: 30, term: 3 });
  assert.equal(reopened.restored.applied_index, 30);
  assert.deepEqual(reopened.restored.entries, []);
  assert.equal(reopened.restored.hard_state.commit, 30);
  await reopened.storage.save(null, { first_index: 31, entries: [entry(31, 3)] });
  await reopened.storage.close();
  const again = await RaftStorage.open(dir);
  assert.deepEqual(again.restored.entries, [entry(31, 3)]);
  await again.storage.close();
});

test('a damaged newest snapshot falls back; none covering the WAL base: clear error', async () => {
  const dir = tempDir();
  const storage = await logWith(dir, 50);
  await storage.snapshots.write({ index: 20, term: 1, voters: [1] }, Buffer.from('s20'));
  await storage.snapshots.write({ index: 40, term: 1, voters: [1] }, Buffer.from('s40'));
  await storage.compactLog({ index: 20, term: 1 }, range(21, 50));
  await storage.close();
  const newest = path.join(dir, snapshotFileName(40, 1));
  fs.writeFileSync(newest, fs.readFileSync(newest).subarray(0, 30)); // a partial file
  const reopened = await RaftStorage.open(dir);
  assert.equal(reopened.snapshot?.meta.index, 20);
  assert.equal(reopened.recovery.damaged_snapshots.length, 1);
  assert.deepEqual(reopened.restored.entries, range(21, 50));
  await reopened.storage.close();
  fs.rmSync(path.join(dir, snapshotFileName(20, 1)));
  await assert.rejects(
    RaftStorage.open(dir),
    (error: unknown) =>
      error instanceof StorageCorruptError &&
      /starts after index 20, but no valid snapshot \(damaged: .*snapshot-0000000040/.test(
        error.message,
      ),
  );
});
