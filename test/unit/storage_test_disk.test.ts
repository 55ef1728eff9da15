/**
 * The test-only disk hooks the chaos test's power loss and slow disk rely on
 * (src/storage/test_disk.ts): a sidecar that says exactly how much of the log
 * the last fdatasync made durable, and an fsync delay read from a file.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { LOG_FILE_NAME, openWithTestDisk } from '../../src/storage';
import { readSyncedLength } from '../../src/storage/test_disk';
import { entryOf, removeDir, tempDir } from '../support/storage_model';

describe('test disk hooks', () => {
  it('records the synced length after every save, equal to the durable file size', async () => {
    const dir = await tempDir();
    try {
      const { storage } = await openWithTestDisk(dir, {
        record_synced: true,
        fsync_delay_file: null,
      });
      const log_file = path.join(dir, LOG_FILE_NAME);
      for (let index = 1; index <= 3; index++) {
        await storage.save(null, { first_index: index, entries: [entryOf(1, `value ${index}`)] });
        assert.equal(readSyncedLength(log_file), fs.statSync(log_file).size);
      }
      await storage.close();
    } finally {
      await removeDir(dir);
    }
  });

  it('delays each fsync by the range in the delay file while it exists', async () => {
    const dir = await tempDir();
    const delay_file = path.join(dir, 'slow');
    try {
      const { storage } = await openWithTestDisk(path.join(dir, 'data'), {
        record_synced: false,
        fsync_delay_file: delay_file,
      });
      fs.writeFileSync(delay_file, '400 450\n');
      await new Promise((resolve) => setTimeout(resolve, 120)); // past the re-read interval
      let started_ms = performance.now();
      await storage.save(null, { first_index: 1, entries: [entryOf(1, 'slow')] });
      assert.ok(performance.now() - started_ms >= 395, 'the save waited for the slow fsync');
      fs.rmSync(delay_file);
      await new Promise((resolve) => setTimeout(resolve, 120));
      started_ms = performance.now();
      await storage.save(null, { first_index: 2, entries: [entryOf(1, 'fast')] });
      assert.ok(performance.now() - started_ms < 395, 'without the file the fsync is not delayed');
      await storage.close();
    } finally {
      await removeDir(dir);
    }
  });
});
