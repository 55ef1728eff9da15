import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { LOG_FILE_NAME, RaftStorage } from '../../src/storage';
import { RECORD_HEADER_BYTES } from '../../src/storage/frame';
import { encodeFileHeader, savePayloadBytes } from '../../src/storage/payload';
import { StorageIoError } from '../../src/util/errors';
import {
  entryOf,
  modelAfter,
  plain,
  removeDir,
  type Save,
  tempDir,
  waitUntil,
} from '../support/storage_model';
import { SpyIo } from '../support/storage_spy_io';

function entrySave(index: number): Save {
  return {
    hard_state: null,
    entries: { first_index: index, entries: [entryOf(1, `entry ${index} `.padEnd(50, '.'))] },
  };
}

function recordBytes(save: Save): number {
  return RECORD_HEADER_BYTES + savePayloadBytes(save.hard_state, save.entries);
}

/** Lets every ready callback and several event-loop turns run. */
async function settle(): Promise<void> {
  for (let turn = 0; turn < 20; turn += 1)
    await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('RaftStorage group commit and durability ordering', () => {
  it('100 concurrent saves share far fewer fsyncs; all are durable and in order', async () => {
    const dir = await tempDir();
    try {
      const { storage } = await RaftStorage.open(dir);
      const saves = Array.from({ length: 100 }, (_, i) => entrySave(i + 1));
      await Promise.all(saves.map((save) => storage.save(save.hard_state, save.entries)));
      const stats = storage.stats();
      assert.equal(stats.saves, 100);
      assert.ok(
        stats.fsyncs < stats.saves,
        `fsyncs ${stats.fsyncs} should be fewer than saves ${stats.saves}`,
      );
      assert.ok(
        stats.fsyncs <= 10,
        `expected a handful of fsyncs for 100 concurrent saves, got ${stats.fsyncs}`,
      );
      assert.equal(stats.fsyncs, stats.batches);
      assert.ok(stats.fsync_max_ms >= stats.fsync_avg_ms && stats.fsync_avg_ms > 0);
      const expected_bytes = saves.reduce((sum, save) => sum + recordBytes(save), 0);
      assert.equal(stats.bytes_written, expected_bytes);
      assert.equal(stats.log_file_bytes, encodeFileHeader().bytes.length + expected_bytes);
      assert.equal(stats.queued_bytes, 0);
      await storage.close();
      const reopened = await RaftStorage.open(dir);
      assert.deepEqual(plain(reopened.restored), plain(modelAfter(saves)));
      await reopened.storage.close();
    } finally {
      await removeDir(dir);
    }
  });

  it('a save does not resolve while its fsync is still running', async () => {
    const dir = await tempDir();
    const io = new SpyIo();
    try {
      const { storage } = await RaftStorage.openWithIo(dir, {}, io);
      io.hold_datasync = true;
      let resolved = false;
      const saved = storage.save({ term: 1, vote: 1, commit: 0 }, entrySave(1).entries).then(() => {
        resolved = true;
        io.events.push('resolved');
      });
      await waitUntil(() => io.held_count === 1, 'the fsync to start');
      await settle();
      assert.equal(resolved, false, 'save resolved before its fsync completed');
      // Saves made meanwhile wait for the next fsync, which covers them all at once.
      const later = [2, 3, 4].map((index) => storage.save(null, entrySave(index).entries));
      await settle();
      // Two writes: the new file's header, then the first save; the later saves wait.
      assert.equal(
        io.events.filter((event) => event.startsWith('write')).length,
        2,
        'later saves must not be written before the running fsync ends',
      );
      io.hold_datasync = false;
      io.release();
      await saved;
      await Promise.all(later);
      const before_resolved = io.events.slice(0, io.events.indexOf('resolved'));
      assert.ok(
        before_resolved.lastIndexOf('datasync end') > before_resolved.lastIndexOf('datasync start'),
        io.events.join(', '),
      );
      assert.equal(
        io.datasyncs_started,
        3,
        'header fsync, first batch, one fsync for the three later saves',
      );
      await storage.close();
    } finally {
      io.release();
      await removeDir(dir);
    }
  });

  it('every save resolves only once a completed fsync covers its record', async () => {
    const dir = await tempDir();
    const io = new SpyIo();
    try {
      const { storage } = await RaftStorage.openWithIo(dir, {}, io);
      let end = io.durable_bytes;
      const pending: Array<Promise<void>> = [];
      const violations: string[] = [];
      for (let wave = 0; wave < 5; wave += 1) {
        for (let i = 0; i < 40; i += 1) {
          const index = wave * 40 + i + 1;
          const save = entrySave(index);
          end += recordBytes(save);
          const record_end = end;
          pending.push(
            storage.save(save.hard_state, save.entries).then(() => {
              if (io.durable_bytes < record_end)
                violations.push(
                  `save ${index} resolved with durable ${io.durable_bytes} < ${record_end}`,
                );
            }),
          );
        }
        await settle();
      }
      await Promise.all(pending);
      assert.deepEqual(violations, []);
      assert.ok(storage.stats().fsyncs < 200);
      await storage.close();
    } finally {
      await removeDir(dir);
    }
  });

  it('a failed fsync fails its saves, the queue and later saves; reopen recovers', async () => {
    const dir = await tempDir();
    const io = new SpyIo();
    try {
      const { storage } = await RaftStorage.openWithIo(dir, {}, io);
      await storage.save({ term: 1, vote: 1, commit: 0 }, entrySave(1).entries);
      io.hold_datasync = true;
      io.fail_next_datasync = new Error('EIO: i/o error, fdatasync');
      const failing = storage.save(null, entrySave(2).entries);
      await waitUntil(() => io.held_count === 1, 'the failing fsync to start');
      const queued = storage.save(null, entrySave(3).entries);
      io.hold_datasync = false;
      io.release();
      await assert.rejects(
        failing,
        (error: unknown) => error instanceof StorageIoError && /fdatasync/.test(error.message),
      );
      await assert.rejects(queued, StorageIoError);
      await assert.rejects(storage.save(null, entrySave(3).entries), StorageIoError);
      await storage.close();
      // Entry 2 was written but never acknowledged: recovery may keep it or not; entry 1 must be
      // there.
      const reopened = await RaftStorage.open(dir, { fsync: false });
      assert.equal(reopened.restored.hard_state.term, 1);
      assert.ok(reopened.restored.entries.length >= 1);
      await reopened.storage.close();
    } finally {
      await removeDir(dir);
    }
  });

  it('a failed write fails it and later saves; its half record is a torn tail', async () => {
    const dir = await tempDir();
    const io = new SpyIo();
    try {
      const { storage } = await RaftStorage.openWithIo(dir, {}, io);
      await storage.save(null, entrySave(1).entries);
      io.fail_next_write = new Error('ENOSPC: no space left on device, write');
      await assert.rejects(
        storage.save(null, entrySave(2).entries),
        (error: unknown) => error instanceof StorageIoError && /ENOSPC/.test(error.message),
      );
      await assert.rejects(storage.save(null, entrySave(2).entries), StorageIoError);
      await storage.close();
      const size = (await fs.promises.stat(path.join(dir, LOG_FILE_NAME))).size;
      const reopened = await RaftStorage.open(dir, { fsync: false });
      assert.deepEqual(plain(reopened.restored), plain(modelAfter([entrySave(1)])));
      assert.ok(reopened.recovery.truncated_tail_bytes > 0);
      assert.equal(
        reopened.storage.stats().log_file_bytes,
        size - reopened.recovery.truncated_tail_bytes,
      );
      await reopened.storage.close();
    } finally {
      await removeDir(dir);
    }
  });

  it('close waits for queued saves to become durable', async () => {
    const dir = await tempDir();
    const io = new SpyIo();
    try {
      const { storage } = await RaftStorage.openWithIo(dir, {}, io);
      io.hold_datasync = true;
      const saves = [1, 2, 3].map((index) => storage.save(null, entrySave(index).entries));
      await waitUntil(() => io.held_count === 1, 'the first fsync to start');
      let closed = false;
      const closing = storage.close().then(() => {
        closed = true;
      });
      await settle();
      assert.equal(closed, false);
      io.hold_datasync = false;
      io.release();
      await Promise.all(saves);
      await closing;
      const reopened = await RaftStorage.open(dir, { fsync: false });
      assert.equal(reopened.restored.entries.length, 3);
      await reopened.storage.close();
    } finally {
      io.release();
      await removeDir(dir);
    }
  });
});
