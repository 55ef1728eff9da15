/**
 * A node takes its data directory's lock before it writes anything there: a second process on
 * the same directory fails at once, without storing a node_id (for a joining node: without
 * asking the cluster for an id, which the first process would then not match).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import { KvNode } from '../../src/server/kv_node';
import { acquireDirLock } from '../../src/storage/lock';
import { StorageLockedError } from '../../src/util/errors';
import { SILENT_LOGGER } from '../../src/util/log';
import { freePortPairs } from '../support/ports';

async function startOnLockedDirectory(config_lines: (dir: string) => string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kvraft-lock-'));
  const data_dir = join(dir, 'data');
  mkdirSync(data_dir);
  // The data directory's lock, as another node process would hold it.
  const lock = await acquireDirLock(data_dir);
  try {
    const node = new KvNode(
      parseConfig(config_lines(data_dir).join('\n'), 'n.conf'),
      SILENT_LOGGER,
    );
    await assert.rejects(node.start(), StorageLockedError);
    assert.equal(existsSync(join(data_dir, 'node_id')), false, 'no node_id written');
    assert.equal(existsSync(join(data_dir, 'raft.wal')), false, 'no log created');
  } finally {
    await lock.release();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a bootstrap node on a locked data directory fails before writing its node_id', async () => {
  const [port, other] = await freePortPairs(2);
  await startOnLockedDirectory((data_dir) => [
    `follower_info 127.0.0.1:${port}`,
    `follower_info 127.0.0.1:${other}`,
    `data_dir ${data_dir}`,
  ]);
});

test('a joining node on a locked data directory fails before asking for an id', {
  timeout: 20_000,
}, async () => {
  // Nothing listens on the join address: a node that tried to join would retry until its
  // deadline instead of failing at once.
  const [port, nobody] = await freePortPairs(2);
  await startOnLockedDirectory((data_dir) => [
    `follower_info 127.0.0.1:${port}`,
    `join 127.0.0.1:${nobody}`,
    `data_dir ${data_dir}`,
  ]);
});
