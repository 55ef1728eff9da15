import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { NODE_STORAGE_IO } from '../../src/storage/io';
import { RaftStorage } from '../../src/storage';

function appendAndSync(
  file: Awaited<ReturnType<typeof NODE_STORAGE_IO.openLog>>,
  chunks: Buffer[],
  position: number,
  sync: boolean,
): Promise<void> {
  return new Promise((resolve, reject) => {
    assert.ok(file.appendAndSync !== undefined, 'the node file layer has the one-job fast path');
    file.appendAndSync(chunks, position, sync, (error) =>
      error === null ? resolve() : reject(error),
    );
  });
}

test('appendAndSync writes its chunks back to back at the position, synced or not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvraft-io-'));
  try {
    const path = join(dir, 'f');
    const file = await NODE_STORAGE_IO.openLog(path);
    await appendAndSync(file, [Buffer.from('abc'), Buffer.from('defg')], 0, true);
    await appendAndSync(file, [Buffer.from('XY')], 2, false);
    await appendAndSync(file, [Buffer.alloc(0), Buffer.from('!')], 7, true);
    assert.equal(readFileSync(path, 'latin1'), 'abXYefg!');
    await file.close();
    // A closed descriptor fails the write: the error reaches `done`, never a throw.
    await assert.rejects(appendAndSync(file, [Buffer.from('z')], 0, true));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('saves through the fast path replay after reopening', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvraft-io-'));
  try {
    const first = await RaftStorage.open(dir);
    const entries = Array.from({ length: 50 }, (_, i) => ({
      term: 1,
      data: Buffer.from(`entry ${i}`),
    }));
    await Promise.all(
      entries.map((entry, i) =>
        first.storage.save(
          { term: 1, vote: 1, commit: i },
          { first_index: i + 1, entries: [entry] },
        ),
      ),
    );
    assert.ok(first.storage.stats().fsyncs >= 1);
    await first.storage.close();
    const second = await RaftStorage.open(dir);
    assert.deepEqual(
      second.restored.entries.map((entry) => Buffer.from(entry.data).toString()),
      entries.map((entry) => entry.data.toString()),
    );
    assert.equal(second.restored.hard_state.commit, 49);
    await second.storage.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
