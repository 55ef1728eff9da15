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
import { NODE_STORAGE_IO } from '../../src/storage/io';
import {
  NODE_ID_FILE_NAME,
  readNodeIdentity,
  writeNodeIdentity,
} from '../../src/storage/node_identity';
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

test('the id file keeps the cluster fingerprint; a one-line file reads without it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvraft-id-'));
  try {
    assert.equal(await readNodeIdentity(NODE_STORAGE_IO, dir), null, 'a first start has none');
    const fingerprint = Buffer.alloc(32, 0xab);
    await writeNodeIdentity(
      NODE_STORAGE_IO,
      dir,
      { id: 7, cluster_fingerprint: fingerprint },
      true,
    );
    assert.equal(
      readFileSync(join(dir, NODE_ID_FILE_NAME), 'latin1'),
      `node_id 7\ncluster ${'ab'.repeat(32)}\n`,
    );
    assert.deepEqual(await readNodeIdentity(NODE_STORAGE_IO, dir), {
      id: 7,
      cluster_fingerprint: fingerprint,
    });
    // Storage opened as node 7 accepts the two-line file; as another node it still refuses.
    const opened = await RaftStorage.open(dir, { node_id: 7 });
    await opened.storage.close();
    await assert.rejects(RaftStorage.open(dir, { node_id: 8 }), NodeIdentityError);

    // A file from before the cluster line: the id, no fingerprint (the caller computes it).
    writeFileSync(join(dir, NODE_ID_FILE_NAME), 'node_id 3\n');
    assert.deepEqual(await readNodeIdentity(NODE_STORAGE_IO, dir), {
      id: 3,
      cluster_fingerprint: null,
    });
    for (const bad of [
      `node_id 3\ncluster ${'ab'.repeat(31)}\n`,
      `node_id 3\ncluster ${'AB'.repeat(32)}\n`,
      `node_id 3\ncluster ${'ab'.repeat(32)}\nextra\n`,
      `cluster ${'ab'.repeat(32)}\n`,
    ]) {
      writeFileSync(join(dir, NODE_ID_FILE_NAME), bad);
      await assert.rejects(readNodeIdentity(NODE_STORAGE_IO, dir), NodeIdentityError, bad);
    }
    await assert.rejects(
      writeNodeIdentity(
        NODE_STORAGE_IO,
        dir,
        { id: 3, cluster_fingerprint: Buffer.alloc(5) },
        true,
      ),
      NodeIdentityError,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
