/**
 * The node id file in the data directory: created at first use, checked at every later open, so
 * a data directory never runs under another node's id.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RaftStorage } from '../../src/storage';
import { NODE_ID_FILE_NAME } from '../../src/storage/node_identity';
import { NodeIdentityError } from '../../src/util/errors';

test('the data directory remembers its node id and refuses another', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvraft-id-'));
  try {
    const first = await RaftStorage.open(dir, { node_id: 3 });
    await first.storage.close();
    assert.equal(readFileSync(join(dir, NODE_ID_FILE_NAME), 'latin1'), 'node_id 3\n');
    const again = await RaftStorage.open(dir, { node_id: 3 });
    await again.storage.close();
    await assert.rejects(
      RaftStorage.open(dir, { node_id: 4 }),
      (error: unknown) =>
        error instanceof NodeIdentityError && /holds the state of node 3/.test(error.message),
    );
    writeFileSync(join(dir, NODE_ID_FILE_NAME), 'garbage');
    await assert.rejects(RaftStorage.open(dir, { node_id: 3 }), NodeIdentityError);
    // The lock was released after each refusal: the directory opens again once the file is right.
    writeFileSync(join(dir, NODE_ID_FILE_NAME), 'node_id 3\n');
    const fixed = await RaftStorage.open(dir, { node_id: 3 });
    await fixed.storage.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
