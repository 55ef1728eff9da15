import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { RaftStorage } from '../../src/storage';
import { AssertionFailure } from '../../src/util/assert';
import { LimitExceededError, StorageIoError } from '../../src/util/errors';
import { LIMITS } from '../../src/util/limits';
import {
  entryOf,
  modelAfter,
  plain,
  propertyParameters,
  removeDir,
  resolveShapes,
  type Save,
  saveShapeArbitrary,
  tempDir,
} from '../support/storage_model';

describe('RaftStorage round trip', () => {
  it('a new directory opens empty and is created if missing', async () => {
    const root = await tempDir();
    try {
      const { storage, restored, recovery } = await RaftStorage.open(`${root}/a/b/data`);
      assert.deepEqual(plain(restored), {
        hard_state: { term: 0, vote: 0, commit: 0 },
        entries: [],
      });
      assert.equal(recovery.records, 0);
      assert.equal(recovery.truncated_tail_bytes, 0);
      assert.equal(recovery.torn_reason, null);
      assert.match(recovery.log_file, /a\/b\/data\/raft\.wal$/);
      await storage.close();
      const again = await RaftStorage.open(`${root}/a/b/data`);
      assert.deepEqual(plain(again.restored), plain(restored));
      await again.storage.close();
    } finally {
      await removeDir(root);
    }
  });

  it('hard states, appends and truncations survive reopen', async () => {
    const dir = await tempDir();
    try {
      const saves: Save[] = [
        { hard_state: { term: 1, vote: 1, commit: 0 }, entries: null },
        {
          hard_state: null,
          entries: { first_index: 1, entries: [entryOf(1, 'a'), entryOf(1, 'b'), entryOf(1, 'c')] },
        },
        { hard_state: { term: 1, vote: 1, commit: 2 }, entries: null },
        // A new leader overwrites the uncommitted suffix from index 3.
        {
          hard_state: { term: 2, vote: 3, commit: 2 },
          entries: { first_index: 3, entries: [entryOf(2, 'x'), entryOf(2, 'y')] },
        },
        // Truncation without new entries, then an empty-data entry.
        { hard_state: null, entries: { first_index: 4, entries: [] } },
        { hard_state: null, entries: { first_index: 4, entries: [entryOf(2, '')] } },
      ];
      const first = await RaftStorage.open(dir);
      for (const save of saves) await first.storage.save(save.hard_state, save.entries);
      await first.storage.close();

      const second = await RaftStorage.open(dir);
      assert.deepEqual(plain(second.restored), plain(modelAfter(saves)));
      assert.deepEqual(
        second.restored.entries.map((entry) => Buffer.from(entry.data).toString()),
        ['a', 'b', 'x', ''],
      );
      assert.equal(second.recovery.records, saves.length);
      // Appending after a reopen continues the same log.
      const more: Save = {
        hard_state: { term: 3, vote: 0, commit: 4 },
        entries: { first_index: 5, entries: [entryOf(3, 'z')] },
      };
      await second.storage.save(more.hard_state, more.entries);
      await second.storage.close();

      const third = await RaftStorage.open(dir);
      assert.deepEqual(plain(third.restored), plain(modelAfter([...saves, more])));
      await third.storage.close();
    } finally {
      await removeDir(dir);
    }
  });

  it('matches the in-memory model for random saves with truncations and reopens', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(saveShapeArbitrary, { maxLength: 12 }), { minLength: 1, maxLength: 4 }),
        async (sessions) => {
          const dir = await tempDir();
          try {
            const all: Save[] = resolveShapes(sessions.flat());
            let done = 0;
            for (const session of sessions) {
              const { storage, restored } = await RaftStorage.open(dir, { fsync: false });
              assert.deepEqual(plain(restored), plain(modelAfter(all.slice(0, done))));
              // Saves of a session are issued together so that some share a batch.
              await Promise.all(
                all
                  .slice(done, done + session.length)
                  .map((save) => storage.save(save.hard_state, save.entries)),
              );
              done += session.length;
              await storage.close();
            }
            const { storage, restored, recovery } = await RaftStorage.open(dir, { fsync: false });
            assert.deepEqual(plain(restored), plain(modelAfter(all)));
            assert.equal(recovery.truncated_tail_bytes, 0);
            await storage.close();
          } finally {
            await removeDir(dir);
          }
        },
      ),
      propertyParameters(60),
    );
  });

  it('an empty save resolves and writes nothing', async () => {
    const dir = await tempDir();
    try {
      const { storage } = await RaftStorage.open(dir, { fsync: false });
      const before = storage.stats().log_file_bytes;
      await storage.save(null, null);
      assert.equal(storage.stats().log_file_bytes, before);
      await storage.close();
    } finally {
      await removeDir(dir);
    }
  });

  it('rejects saves leaving a gap, bad numbers, oversized records, saves after close', async () => {
    const dir = await tempDir();
    try {
      const { storage } = await RaftStorage.open(dir, { fsync: false });
      await assert.rejects(
        storage.save(null, { first_index: 2, entries: [entryOf(1, 'gap')] }),
        AssertionFailure,
      );
      await assert.rejects(storage.save(null, { first_index: 0, entries: [] }), AssertionFailure);
      await assert.rejects(storage.save({ term: -1, vote: 0, commit: 0 }, null), AssertionFailure);
      await assert.rejects(storage.save({ term: 1.5, vote: 0, commit: 0 }, null), AssertionFailure);
      await assert.rejects(
        storage.save(null, {
          first_index: 1,
          entries: [{ term: 2 ** 32, data: new Uint8Array(0) }],
        }),
        AssertionFailure,
      );
      const huge = { term: 1, data: new Uint8Array(LIMITS.wal_record_bytes_max) };
      await assert.rejects(
        storage.save(null, { first_index: 1, entries: [huge] }),
        (error: unknown) => {
          assert.ok(error instanceof LimitExceededError);
          assert.equal(error.limit, 'wal_record_bytes_max');
          return true;
        },
      );
      // Rejected saves leave no trace: the log still starts at index 1.
      await storage.save(null, { first_index: 1, entries: [entryOf(1, 'ok')] });
      await storage.close();
      await assert.rejects(storage.save({ term: 1, vote: 0, commit: 0 }, null), StorageIoError);
      const reopened = await RaftStorage.open(dir, { fsync: false });
      assert.deepEqual(plain(reopened.restored).entries, [
        { term: 1, data: Buffer.from('ok').toString('hex') },
      ]);
      await reopened.storage.close();
    } finally {
      await removeDir(dir);
    }
  });

  it('replays a log larger than one read chunk, entries crossing chunk boundaries', async () => {
    const dir = await tempDir();
    try {
      const { storage } = await RaftStorage.open(dir, { fsync: false });
      const saves: Save[] = [];
      for (let i = 0; i < 40; i += 1) {
        // 70 KiB records: several per 1 MiB chunk, never aligned with it.
        const data = Buffer.alloc(70 * 1024 + i, i);
        saves.push({
          hard_state: { term: 1, vote: 1, commit: i },
          entries: { first_index: i + 1, entries: [{ term: 1, data }] },
        });
      }
      saves.push({ hard_state: null, entries: { first_index: 11, entries: [entryOf(2, 'tail')] } });
      for (const save of saves) await storage.save(save.hard_state, save.entries);
      assert.ok(storage.stats().log_file_bytes > 2 * LIMITS.wal_replay_chunk_bytes);
      await storage.close();
      const reopened = await RaftStorage.open(dir, { fsync: false });
      assert.deepEqual(plain(reopened.restored), plain(modelAfter(saves)));
      await reopened.storage.close();
    } finally {
      await removeDir(dir);
    }
  });
});
