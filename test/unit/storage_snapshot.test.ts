/**
 * Snapshot files: round trip, fallback past a damaged newest file, retention, and crashes at
 * every step of a write on the faulty disk (the newest loadable snapshot is always an intact one:
 * the new one or the previous one).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NODE_STORAGE_IO } from '../../src/storage/io';
import { SnapshotStore, snapshotFileName } from '../../src/storage/snapshot_store';
import { SeededRandom } from '../../src/util/prng';
import { FaultyDisk } from '../support/faulty_disk';

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'kv-snap-'));
}

const state = (fill: number, bytes: number): Buffer => Buffer.alloc(bytes, fill);

test('a written snapshot loads back with its metadata and state', async () => {
  const dir = tempDir();
  const store = new SnapshotStore(NODE_STORAGE_IO, dir, true);
  const written = await store.write({ index: 42, term: 7, voters: [1, 2, 3] }, state(9, 5000));
  assert.equal(path.basename(written.file), snapshotFileName(42, 7));
  const loaded = await store.loadNewest(() => assert.fail('nothing is damaged'));
  assert.ok(loaded);
  assert.deepEqual(loaded.meta, { index: 42, term: 7, voters: [1, 2, 3] });
  assert.deepEqual(loaded.state, state(9, 5000));
  assert.equal(loaded.file_bytes, written.file_bytes);
});

test('a damaged newest snapshot falls back to the previous one, and says so', async () => {
  const dir = tempDir();
  const store = new SnapshotStore(NODE_STORAGE_IO, dir, true);
  await store.write({ index: 10, term: 1, voters: [1] }, state(1, 100));
  const newest = await store.write({ index: 20, term: 2, voters: [1] }, state(2, 100));
  const bytes = fs.readFileSync(newest.file);
  bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0xff, bytes.length - 1);
  fs.writeFileSync(newest.file, bytes);
  const damaged: string[] = [];
  const loaded = await store.loadNewest((file, reason) => damaged.push(`${file}: ${reason}`));
  assert.equal(loaded?.meta.index, 10);
  assert.equal(damaged.length, 1);
  assert.match(damaged[0] ?? '', /checksum mismatch/);
  fs.truncateSync(path.join(dir, snapshotFileName(10, 1)), 20);
  assert.equal(await store.loadNewest(() => undefined), null, 'none valid: null');
});

test('only the newest two snapshots are kept, and no temporary file', async () => {
  const dir = tempDir();
  const store = new SnapshotStore(NODE_STORAGE_IO, dir, true);
  fs.writeFileSync(path.join(dir, `${snapshotFileName(1, 1)}.tmp`), 'left by a crash');
  for (const index of [5, 6, 7, 8])
    await store.write({ index, term: 1, voters: [1] }, state(0, 10));
  assert.deepEqual(fs.readdirSync(dir).sort(), [snapshotFileName(7, 1), snapshotFileName(8, 1)]);
});

/** Runs scheduled disk operations one at a time; `crash_after` operations in, crashes the disk. */
async function writeWithCrash(disk: FaultyDisk, crash_after: number): Promise<void> {
  const queue: Array<() => void> = [];
  const io = disk.io((_delay_ms, run) => queue.push(run));
  const store = new SnapshotStore(io, '/data', true);
  let done = false;
  void store
    .write({ index: 20, term: 2, voters: [1, 2, 3] }, state(2, 3000))
    .finally(() => {
      done = true;
    })
    .catch(() => undefined);
  for (let ops = 0; !done; ops++) {
    await new Promise((resolve) => setImmediate(resolve));
    if (ops === crash_after) {
      disk.crash();
      return;
    }
    const next = queue.shift();
    if (next === undefined) continue;
    next();
  }
}

async function loadAll(disk: FaultyDisk): Promise<number | null> {
  const io = disk.io((_delay_ms, run) => setImmediate(run));
  const loaded = await new SnapshotStore(io, '/data', true).loadNewest(() => undefined);
  if (loaded === null) return null;
  assert.deepEqual(loaded.state, state(loaded.meta.index === 20 ? 2 : 1, 3000));
  return loaded.meta.index;
}

test('a crash anywhere in a snapshot write leaves the new or the previous snapshot', async () => {
  const seen = new Set<number | null>();
  for (let seed = 1; seed <= 60; seed++) {
    const disk = new FaultyDisk(new SeededRandom(seed), { sector_bytes: 512 });
    disk.makeDirectory('/data');
    const setup = new SnapshotStore(
      disk.io((_delay_ms, run) => setImmediate(run)),
      '/data',
      true,
    );
    await setup.write({ index: 10, term: 1, voters: [1, 2, 3] }, state(1, 3000));
    await writeWithCrash(disk, seed % 15);
    const index = await loadAll(disk);
    assert.ok(index === 10 || index === 20, `seed ${seed}: loaded ${index}`);
    seen.add(index);
  }
  assert.deepEqual([...seen].sort(), [10, 20], 'crashes hit both before and after the rename');
});

/** Streams the newest snapshot of `from` into `to` in `chunk_bytes` chunks, `damage` applied. */
async function transfer(
  from: SnapshotStore,
  to: SnapshotStore,
  chunk_bytes: number,
  damage: (offset: number, chunk: Buffer) => void = () => undefined,
): Promise<void> {
  const reader = await from.openNewestReader();
  assert.ok(reader);
  const writer = await to.receive(reader.index, reader.term, reader.total_bytes);
  try {
    for (let offset = 0; offset < reader.total_bytes; offset += chunk_bytes) {
      const chunk = await reader.read(offset, chunk_bytes);
      damage(offset, chunk);
      await writer.write(offset, chunk);
    }
    await writer.finish();
  } finally {
    await reader.close();
  }
}

test('InstallSnapshot: a snapshot streamed in chunks is verified, renamed and loads', async () => {
  const leader = new SnapshotStore(NODE_STORAGE_IO, tempDir(), true);
  await leader.write({ index: 77, term: 3, voters: [1, 2, 3] }, state(5, 10_000));
  const follower_dir = tempDir();
  const follower = new SnapshotStore(NODE_STORAGE_IO, follower_dir, true);
  await transfer(leader, follower, 999);
  assert.deepEqual(fs.readdirSync(follower_dir), [snapshotFileName(77, 3)]);
  const loaded = await follower.loadPoint({ index: 77, term: 3 });
  assert.deepEqual(loaded.state, state(5, 10_000));
});

test('InstallSnapshot: a damaged or short received file is refused, nothing kept', async () => {
  const leader = new SnapshotStore(NODE_STORAGE_IO, tempDir(), true);
  await leader.write({ index: 77, term: 3, voters: [1] }, state(5, 3000));
  for (const at of [0, 13, 17, 29, 2999]) {
    const follower_dir = tempDir();
    const follower = new SnapshotStore(NODE_STORAGE_IO, follower_dir, true);
    await assert.rejects(
      transfer(leader, follower, 100, (offset, chunk) => {
        if (at >= offset && at < offset + chunk.length) chunk[at - offset]! ^= 0x40;
      }),
      /received snapshot 77/,
      `byte ${at}`,
    );
    assert.deepEqual(fs.readdirSync(follower_dir), [], `byte ${at}: no file left`);
  }
  const follower = new SnapshotStore(NODE_STORAGE_IO, tempDir(), true);
  const writer = await follower.receive(78, 3, 3000 + 32);
  await assert.rejects(writer.write(100, Buffer.alloc(1)), /does not follow/);
  await assert.rejects(writer.finish(), /0 of 3032 bytes/);
});

test('InstallSnapshot: partial received files are removed at open', async () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, `${snapshotFileName(5, 1)}.recv`), 'partial');
  const store = new SnapshotStore(NODE_STORAGE_IO, dir, true);
  assert.equal(await store.loadNewest(() => undefined), null);
  assert.deepEqual(fs.readdirSync(dir), []);
});

test('the snapshot reader fails the last chunk of a rotted file, each pass from 0', async () => {
  const dir = tempDir();
  const store = new SnapshotStore(NODE_STORAGE_IO, dir, true);
  const written = await store.write({ index: 30, term: 3, voters: [1] }, state(5, 1000));
  const readAll = async (reader: { read(o: number, n: number): Promise<Buffer> }) => {
    for (let at = 0; at < written.file_bytes; at += 100) await reader.read(at, 100);
  };
  const reader = await store.openNewestReader();
  assert.ok(reader);
  await readAll(reader); // intact: the whole pass reads
  const bytes = fs.readFileSync(written.file);
  bytes.writeUInt8(bytes.readUInt8(500) ^ 0x10, 500); // rots after the first pass
  fs.writeFileSync(written.file, bytes);
  await assert.rejects(readAll(reader), /checksum mismatch/, 'the next pass from 0 finds it');
  await reader.close();
  const fresh = await store.openNewestReader();
  assert.ok(fresh);
  await assert.rejects(readAll(fresh), /checksum mismatch/);
  // Only the last chunk fails: a follower never receives a complete damaged file.
  await fresh.read(0, 100);
  await fresh.read(100, written.file_bytes - 200);
  await assert.rejects(fresh.read(written.file_bytes - 100, 100), /checksum mismatch/);
  await fresh.close();
});
