/**
 * The data directory's incarnation and the peers' incarnations it remembers
 * (storage/incarnation.ts): created once, reloaded, corrupt files refused, the bound enforced, and
 * a first sighting durable before remember() resolves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RaftStorage } from '../../src/storage';
import {
  IncarnationMismatchError,
  INCARNATION_FILE_NAME,
  NO_INCARNATION,
  openIncarnations,
  PEER_INCARNATIONS_FILE_NAME,
  PeerIncarnations,
} from '../../src/storage/incarnation';
import { NODE_STORAGE_IO, type StorageIo } from '../../src/storage/io';
import { LimitExceededError, StorageCorruptError } from '../../src/util/errors';
import { LIMITS } from '../../src/util/limits';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'kvraft-incarnation-'));
}

const incarnation = (byte: number): Buffer => Buffer.alloc(16, byte);

test('a data directory draws its incarnation once and keeps it', async () => {
  const dir = tempDir();
  try {
    const first = await openIncarnations(dir);
    assert.equal(first.created, true);
    assert.equal(first.incarnation.length, 16);
    assert.ok(!first.incarnation.equals(NO_INCARNATION));
    const text = readFileSync(join(dir, INCARNATION_FILE_NAME), 'latin1');
    assert.equal(text, `incarnation ${first.incarnation.toString('hex')}\n`);
    const again = await openIncarnations(dir);
    assert.equal(again.created, false);
    assert.deepEqual(again.incarnation, first.incarnation);
    // Another directory (a lost one recreated) is another incarnation.
    const other_dir = tempDir();
    try {
      const other = await openIncarnations(other_dir);
      assert.ok(!other.incarnation.equals(first.incarnation));
    } finally {
      rmSync(other_dir, { recursive: true, force: true });
    }
    writeFileSync(join(dir, INCARNATION_FILE_NAME), 'incarnation nothex\n');
    await assert.rejects(openIncarnations(dir), StorageCorruptError);
    writeFileSync(join(dir, INCARNATION_FILE_NAME), `incarnation ${'0'.repeat(32)}\n`);
    await assert.rejects(openIncarnations(dir), StorageCorruptError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an older version's data directory (WAL and node_id, no incarnation) gets one", async () => {
  const dir = tempDir();
  try {
    const opened = await RaftStorage.open(dir, { node_id: 2 });
    await opened.storage.close();
    const { created, incarnation } = await openIncarnations(dir);
    assert.equal(created, true);
    assert.deepEqual((await openIncarnations(dir)).incarnation, incarnation);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('peer incarnations: remembered durably, reloaded, a different one refused', async () => {
  const dir = tempDir();
  try {
    const book = await PeerIncarnations.open(NODE_STORAGE_IO, dir, true);
    assert.equal(book.recall(2), null);
    const pending = book.remember(2, incarnation(0xaa));
    assert.notEqual(pending, 'durable', 'a first sighting has to be written');
    assert.deepEqual(book.recall(2), incarnation(0xaa), 'known while being written');
    await pending;
    assert.equal(book.remember(2, incarnation(0xaa)), 'durable');
    await book.remember(3, incarnation(0xbb));
    await assert.rejects(
      Promise.resolve(book.remember(2, incarnation(0xcc))),
      (error: unknown) => error instanceof IncarnationMismatchError && error.peer_id === 2,
    );
    assert.equal(
      readFileSync(join(dir, PEER_INCARNATIONS_FILE_NAME), 'latin1'),
      `kvstore-peer-incarnations v1\n2 ${'aa'.repeat(16)}\n3 ${'bb'.repeat(16)}\n`,
    );
    const reloaded = await PeerIncarnations.open(NODE_STORAGE_IO, dir, true);
    assert.equal(reloaded.size, 2);
    assert.deepEqual(reloaded.recall(2), incarnation(0xaa));
    assert.deepEqual(reloaded.recall(3), incarnation(0xbb));
    assert.equal(reloaded.remember(3, incarnation(0xbb)), 'durable');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('peer incarnations: a damaged file is a StorageCorruptError, never a guess', async () => {
  const dir = tempDir();
  const file = join(dir, PEER_INCARNATIONS_FILE_NAME);
  const line = (id: number, byte: string): string => `${id} ${byte.repeat(16)}`;
  const damaged = [
    '',
    'kvstore-peer-incarnations v2\n',
    `kvstore-peer-incarnations v1\n${line(2, 'aa')}`, // truncated: no final newline
    `kvstore-peer-incarnations v1\n${line(2, 'aa')}\n${line(2, 'bb')}\n`, // twice
    `kvstore-peer-incarnations v1\n2 ${'aa'.repeat(15)}\n`, // short
    `kvstore-peer-incarnations v1\n${line(2, '00')}\n`, // zero
    `kvstore-peer-incarnations v1\n${line(2, 'aa')}\n\n`,
  ];
  try {
    for (const text of damaged) {
      writeFileSync(file, text);
      await assert.rejects(
        PeerIncarnations.open(NODE_STORAGE_IO, dir, false),
        (error: unknown) =>
          error instanceof StorageCorruptError && error.message.includes('delete it'),
        JSON.stringify(text),
      );
    }
    writeFileSync(file, `kvstore-peer-incarnations v1\n${line(7, 'aa')}\n`);
    const book = await PeerIncarnations.open(NODE_STORAGE_IO, dir, false);
    assert.deepEqual(book.recall(7), incarnation(0xaa));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('peer incarnations: at most peer_incarnations_max peers (file and memory)', async () => {
  const dir = tempDir();
  const max = LIMITS.peer_incarnations_max;
  try {
    const lines = ['kvstore-peer-incarnations v1'];
    for (let id = 1; id <= max; id++) lines.push(`${id} ${'ab'.repeat(16)}`);
    writeFileSync(join(dir, PEER_INCARNATIONS_FILE_NAME), `${lines.join('\n')}\n`);
    const full = await PeerIncarnations.open(NODE_STORAGE_IO, dir, false);
    assert.equal(full.size, max);
    await assert.rejects(
      Promise.resolve(full.remember(max + 1, incarnation(1))),
      (error: unknown) =>
        error instanceof LimitExceededError && error.limit === 'peer_incarnations_max',
    );
    assert.equal(full.recall(max + 1), null);
    assert.equal(full.remember(max, incarnation(0xab)), 'durable', 'known peers still pass');
    lines.push(`${max + 1} ${'ab'.repeat(16)}`);
    writeFileSync(join(dir, PEER_INCARNATIONS_FILE_NAME), `${lines.join('\n')}\n`);
    await assert.rejects(PeerIncarnations.open(NODE_STORAGE_IO, dir, false), StorageCorruptError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('peer incarnations: remember resolves after the fsync; a failed write forgets', async () => {
  const dir = tempDir();
  const events: string[] = [];
  let fail_next_rename = false;
  const io: StorageIo = {
    ...NODE_STORAGE_IO,
    async openLog(path) {
      const file = await NODE_STORAGE_IO.openLog(path);
      return {
        ...file,
        size: () => file.size(),
        read: (...args) => file.read(...args),
        write: (...args) => file.write(...args),
        truncate: (length) => file.truncate(length),
        close: () => file.close(),
        async datasync() {
          events.push('datasync');
          await file.datasync();
        },
      };
    },
    async rename(from, to) {
      if (fail_next_rename) {
        fail_next_rename = false;
        throw new Error('disk full');
      }
      events.push('rename');
      await NODE_STORAGE_IO.rename(from, to);
    },
    async syncDirectory(path) {
      events.push('sync dir');
      await NODE_STORAGE_IO.syncDirectory(path);
    },
  };
  try {
    const book = await PeerIncarnations.open(io, dir, true);
    const written = book.remember(4, incarnation(0x44));
    assert.notEqual(written, 'durable');
    // Two concurrent sightings of the same peer share the one write.
    assert.equal(book.remember(4, incarnation(0x44)), written);
    await written;
    events.push('resolved');
    assert.deepEqual(events, ['datasync', 'rename', 'sync dir', 'resolved']);
    fail_next_rename = true;
    await assert.rejects(Promise.resolve(book.remember(5, incarnation(0x55))), /disk full/);
    assert.equal(book.recall(5), null, 'not durable: not remembered, the next handshake retries');
    await book.remember(5, incarnation(0x55));
    assert.deepEqual(
      (await PeerIncarnations.open(io, dir, true)).recall(5),
      incarnation(0x55),
      'written after the retry',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
