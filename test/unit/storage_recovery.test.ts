import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LOG_FILE_NAME, RaftStorage } from '../../src/storage';
import { RECORD_HEADER_BYTES, RecordType, sealRecord } from '../../src/storage/frame';
import { encodeFileHeader, encodeSave } from '../../src/storage/payload';
import { StorageCorruptError } from '../../src/util/errors';
import { SeededRandom } from '../../src/util/prng';
import {
  applyToModel,
  emptyModel,
  entryOf,
  type ModelLog,
  modelAfter,
  plain,
  propertyParameters,
  removeDir,
  resolveShape,
  type Save,
  saveShapeArbitrary,
  tempDir,
  waitUntil,
} from '../support/storage_model';
import { SpyIo } from '../support/storage_spy_io';

const SAVES: Save[] = [
  { hard_state: { term: 1, vote: 2, commit: 0 }, entries: null },
  {
    hard_state: null,
    entries: { first_index: 1, entries: [entryOf(1, 'set a 1'), entryOf(1, 'set b 2')] },
  },
  {
    hard_state: { term: 1, vote: 2, commit: 2 },
    entries: { first_index: 3, entries: [entryOf(1, 'del a')] },
  },
  {
    hard_state: { term: 2, vote: 0, commit: 2 },
    entries: { first_index: 3, entries: [entryOf(2, 'set c 3')] },
  },
  {
    hard_state: { term: 2, vote: 0, commit: 3 },
    entries: { first_index: 4, entries: [entryOf(2, 'x'.repeat(60))] },
  },
];

interface WrittenLog {
  bytes: Buffer;
  /** [start, end) byte range of each save's record, in order. */
  records: Array<[number, number]>;
}

async function writeLog(dir: string, saves: readonly Save[]): Promise<WrittenLog> {
  const { storage } = await RaftStorage.open(dir, { fsync: false });
  const records: Array<[number, number]> = [];
  for (const save of saves) {
    const start = storage.stats().log_file_bytes;
    await storage.save(save.hard_state, save.entries);
    records.push([start, storage.stats().log_file_bytes]);
  }
  await storage.close();
  return { bytes: await fs.promises.readFile(path.join(dir, LOG_FILE_NAME)), records };
}

function rangeOf(log: WrittenLog, index: number): [number, number] {
  const range = log.records[index];
  assert.ok(range !== undefined);
  return range;
}

async function expectCorrupt(dir: string, pattern: RegExp): Promise<void> {
  await assert.rejects(RaftStorage.open(dir, { fsync: false }), (error: unknown) => {
    assert.ok(
      error instanceof StorageCorruptError,
      `expected StorageCorruptError, got ${String(error)}`,
    );
    assert.equal(error.code, 'STORAGE_CORRUPT');
    assert.ok(
      error.message.includes(path.join(dir, LOG_FILE_NAME)),
      `message names the file: ${error.message}`,
    );
    assert.match(error.message, pattern);
    return true;
  });
  // A refused open must not leave the directory locked.
  assert.equal(fs.existsSync(path.join(dir, 'LOCK')), false);
}

describe('RaftStorage recovery: torn tail', () => {
  it('a cut last record (bare, zeroed, garbage) at any offset is truncated', async () => {
    const seed = Number(process.env.STORAGE_TEST_SEED ?? Date.now() % 1_000_000);
    const random = new SeededRandom(seed);
    const dir = await tempDir();
    try {
      const log = await writeLog(dir, SAVES);
      const [start, end] = rangeOf(log, SAVES.length - 1);
      const intact = modelAfter(SAVES.slice(0, -1));
      const next: Save = {
        hard_state: { term: 3, vote: 1, commit: 3 },
        entries: { first_index: 4, entries: [entryOf(3, 'after repair')] },
      };
      const file = path.join(dir, LOG_FILE_NAME);
      for (let cut = start; cut < end; cut += 1) {
        for (const tail of ['none', 'zeros', 'garbage'] as const) {
          const context = `cut at ${cut} (record ${start}..${end}), tail ${tail}, seed ${seed}`;
          let tail_bytes: Buffer;
          if (tail === 'none') tail_bytes = Buffer.alloc(0);
          else if (tail === 'zeros') tail_bytes = Buffer.alloc(end - cut);
          else
            tail_bytes = Buffer.from(
              Array.from({ length: 1 + random.int(2 * (end - start)) }, () => random.int(256)),
            );
          // Garbage that starts with the cut-off byte could rebuild the record (seed 846003 did):
          // then nothing was cut. Make the first garbage byte differ from the original.
          if (tail === 'garbage' && tail_bytes[0] === log.bytes[cut])
            tail_bytes[0] = (tail_bytes[0] ?? 0) ^ 0xff;
          await fs.promises.writeFile(
            file,
            Buffer.concat([log.bytes.subarray(0, cut), tail_bytes]),
          );

          const reopened = await RaftStorage.open(dir, { fsync: false });
          assert.deepEqual(plain(reopened.restored), plain(intact), context);
          assert.equal(
            reopened.recovery.truncated_tail_bytes,
            cut - start + tail_bytes.length,
            context,
          );
          assert.equal(reopened.recovery.records, SAVES.length - 1, context);
          // A cut exactly at the record boundary with nothing after it is a clean end.
          assert.equal(
            reopened.recovery.torn_reason === null,
            reopened.recovery.truncated_tail_bytes === 0,
            context,
          );
          await reopened.storage.save(next.hard_state, next.entries);
          await reopened.storage.close();

          const again = await RaftStorage.open(dir, { fsync: false });
          assert.deepEqual(plain(again.restored), plain(applyToModel(intact, next)), context);
          assert.equal(again.recovery.truncated_tail_bytes, 0, context);
          await again.storage.close();
        }
      }
    } finally {
      await removeDir(dir);
    }
  });

  it('a file torn inside its header (crash while creating it) starts over empty', async () => {
    const dir = await tempDir();
    try {
      const header = encodeFileHeader().bytes;
      const file = path.join(dir, LOG_FILE_NAME);
      for (let cut = 0; cut < header.length; cut += 1) {
        // Not zeros here: the header ends in zero bytes, so zeros could complete it.
        await fs.promises.writeFile(
          file,
          Buffer.concat([header.subarray(0, cut), Buffer.alloc(cut % 3, 0xa5)]),
        );
        const { storage, restored, recovery } = await RaftStorage.open(dir, { fsync: false });
        assert.deepEqual(plain(restored), plain(emptyModel()));
        assert.equal(recovery.truncated_tail_bytes, cut + (cut % 3));
        await storage.save({ term: 1, vote: 1, commit: 0 }, null);
        await storage.close();
        const again = await RaftStorage.open(dir, { fsync: false });
        assert.deepEqual(again.restored.hard_state, { term: 1, vote: 1, commit: 0 });
        await again.storage.close();
      }
    } finally {
      await removeDir(dir);
    }
  });

  it('a tail header claiming a record over wal_record_bytes_max is torn', async () => {
    const dir = await tempDir();
    try {
      const log = await writeLog(dir, SAVES);
      const [start] = rangeOf(log, SAVES.length - 1);
      const bytes = Buffer.from(log.bytes);
      bytes.writeUInt32LE(0xfffffff0, start + 8);
      await fs.promises.writeFile(path.join(dir, LOG_FILE_NAME), bytes);
      const { storage, restored, recovery } = await RaftStorage.open(dir, { fsync: false });
      assert.deepEqual(plain(restored), plain(modelAfter(SAVES.slice(0, -1))));
      assert.equal(recovery.truncated_tail_bytes, bytes.length - start);
      assert.match(recovery.torn_reason ?? '', /exceeds wal_record_bytes_max/);
      await storage.close();
    } finally {
      await removeDir(dir);
    }
  });
});

describe('RaftStorage recovery: corruption before the tail', () => {
  it('a damaged byte before intact records is StorageCorruptError naming the offset', async () => {
    const dir = await tempDir();
    try {
      const log = await writeLog(dir, SAVES);
      const [start, end] = rangeOf(log, 1);
      for (let at = start; at < end; at += 1) {
        const bytes = Buffer.from(log.bytes);
        bytes[at] = (bytes[at] ?? 0) ^ (1 + (at % 255));
        await fs.promises.writeFile(path.join(dir, LOG_FILE_NAME), bytes);
        await expectCorrupt(
          dir,
          new RegExp(
            `damaged record at byte offset ${start} .*intact record starts at byte offset ${end}`,
          ),
        );
      }
    } finally {
      await removeDir(dir);
    }
  });

  it('zeroed bytes in the middle of the log are corruption, not a torn tail', async () => {
    const dir = await tempDir();
    try {
      const log = await writeLog(dir, SAVES);
      const [start, end] = rangeOf(log, 2);
      const bytes = Buffer.from(log.bytes);
      bytes.fill(0, start, end);
      await fs.promises.writeFile(path.join(dir, LOG_FILE_NAME), bytes);
      await expectCorrupt(dir, new RegExp(`byte offset ${start}`));
    } finally {
      await removeDir(dir);
    }
  });

  it('intact records in the wrong order break the checksum chain', async () => {
    const dir = await tempDir();
    try {
      const log = await writeLog(dir, SAVES);
      const [a_start, a_end] = rangeOf(log, 1);
      const [, b_end] = rangeOf(log, 2);
      const swapped = Buffer.concat([
        log.bytes.subarray(0, a_start),
        log.bytes.subarray(a_end, b_end),
        log.bytes.subarray(a_start, a_end),
        log.bytes.subarray(b_end),
      ]);
      await fs.promises.writeFile(path.join(dir, LOG_FILE_NAME), swapped);
      await expectCorrupt(
        dir,
        new RegExp(`record at byte offset ${a_start}: breaks the checksum chain`),
      );
    } finally {
      await removeDir(dir);
    }
  });

  it('a record from another log spliced onto the end breaks the chain', async () => {
    const dir = await tempDir();
    const other = await tempDir();
    try {
      const log = await writeLog(dir, SAVES);
      const foreign = await writeLog(other, SAVES.slice(0, 3));
      const [f_start, f_end] = rangeOf(foreign, 2);
      await fs.promises.writeFile(
        path.join(dir, LOG_FILE_NAME),
        Buffer.concat([log.bytes, foreign.bytes.subarray(f_start, f_end)]),
      );
      await expectCorrupt(
        dir,
        new RegExp(`record at byte offset ${log.bytes.length}: breaks the checksum chain`),
      );
    } finally {
      await removeDir(dir);
      await removeDir(other);
    }
  });

  it('intact but invalid contents are corruption: no header, bad version, gap', async () => {
    const dir = await tempDir();
    try {
      const file = path.join(dir, LOG_FILE_NAME);
      const not_header = encodeSave({ term: 1, vote: 0, commit: 0 }, null, 0);
      await fs.promises.writeFile(file, not_header.bytes);
      await expectCorrupt(dir, /byte offset 0: the first record is not a file header/);

      const future = Buffer.from(encodeFileHeader().bytes);
      future.writeUInt32LE(99, RECORD_HEADER_BYTES + 8);
      sealRecord(future, RecordType.FileHeader, 0);
      await fs.promises.writeFile(file, future);
      await expectCorrupt(dir, /unsupported format version 99/);

      const header = encodeFileHeader();
      const gap = encodeSave(null, { first_index: 3, entries: [entryOf(1, 'gap')] }, header.crc);
      await fs.promises.writeFile(file, Buffer.concat([header.bytes, gap.bytes]));
      await expectCorrupt(
        dir,
        new RegExp(
          `byte offset ${header.bytes.length}: entries ` +
            `start at index 3 but the log ends at index 0`,
        ),
      );

      const second_header = encodeFileHeader();
      const chained = Buffer.from(second_header.bytes);
      sealRecord(chained, RecordType.FileHeader, header.crc);
      await fs.promises.writeFile(file, Buffer.concat([header.bytes, chained]));
      await expectCorrupt(dir, /a file header record after the start of the file/);
    } finally {
      await removeDir(dir);
    }
  });
});

describe('RaftStorage recovery: crash at any moment', () => {
  it('after a crash the log holds every acked save and a prefix of the unacked ones', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(saveShapeArbitrary, { maxLength: 8 }),
        fc.array(saveShapeArbitrary, { maxLength: 8 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.constantFrom('none', 'zeros', 'garbage'),
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        async (acknowledged_shapes, in_flight_shapes, kept_fraction, tail, garbage) => {
          const dir = await tempDir();
          const crash_dir = await tempDir();
          const io = new SpyIo();
          io.real_datasync = false;
          const { storage } = await RaftStorage.openWithIo(dir, {}, io);
          const in_flight: Array<Promise<void>> = [];
          try {
            let model: ModelLog = emptyModel();
            const states: ModelLog[] = [];
            for (const shape of acknowledged_shapes) {
              const save = resolveShape(shape, model.entries.length);
              await storage.save(save.hard_state, save.entries);
              model = applyToModel(model, save);
            }
            states.push(model);
            io.hold_datasync = true;
            for (const shape of in_flight_shapes) {
              const save = resolveShape(shape, model.entries.length);
              in_flight.push(storage.save(save.hard_state, save.entries).catch(() => undefined));
              model = applyToModel(model, save);
              states.push(model);
            }
            const writes_something = in_flight_shapes.some(
              (shape) => shape.hard_state !== null || shape.entries !== null,
            );
            if (writes_something)
              await waitUntil(() => io.held_count > 0, 'the first in-flight batch to reach fsync');

            // The crash: everything fsync'd survives; of the rest, any prefix, then zeros or
            // garbage.
            const bytes = await fs.promises.readFile(path.join(dir, LOG_FILE_NAME));
            const kept =
              io.durable_bytes + Math.floor(kept_fraction * (bytes.length - io.durable_bytes));
            const tail_bytes =
              tail === 'none'
                ? Buffer.alloc(0)
                : tail === 'zeros'
                  ? Buffer.alloc(garbage.length)
                  : Buffer.from(garbage);
            await fs.promises.writeFile(
              path.join(crash_dir, LOG_FILE_NAME),
              Buffer.concat([bytes.subarray(0, kept), tail_bytes]),
            );

            const recovered = await RaftStorage.open(crash_dir, { fsync: false });
            const got = plain(recovered.restored);
            assert.ok(
              states.some((state) => JSON.stringify(plain(state)) === JSON.stringify(got)),
              `recovered state is not the state after the acknowledged saves ` +
                `plus a prefix of the in-flight ones: ${JSON.stringify(got)}`,
            );
            await recovered.storage.close();
          } finally {
            io.hold_datasync = false;
            io.release();
            await Promise.all(in_flight);
            await storage.close();
            await removeDir(dir);
            await removeDir(crash_dir);
          }
        },
      ),
      propertyParameters(150),
    );
  });
});

describe('RaftStorage recovery: a value that embeds a record', () => {
  it('a torn tail whose payload holds a well-formed record is truncated, not refused', async () => {
    const dir = await tempDir();
    try {
      // A client value carrying a sealed record: intact by itself, chained to nothing.
      const embedded = encodeSave(
        { term: 9, vote: 1, commit: 0 },
        { first_index: 1, entries: [entryOf(9, 'forged')] },
        0,
      ).bytes;
      const value = Buffer.concat([Buffer.from('v='), embedded, Buffer.from('=end')]);
      const evil: Save = {
        hard_state: { term: 2, vote: 0, commit: 4 },
        entries: { first_index: 5, entries: [{ term: 2, data: value }] },
      };
      const log = await writeLog(dir, [...SAVES, evil]);
      const [start, end] = rangeOf(log, SAVES.length);
      const embedded_at = log.bytes.indexOf(embedded, start);
      assert.ok(embedded_at > start && embedded_at + embedded.length < end - 1);
      // The crash tore the last write after the embedded record but before its end.
      const torn = log.bytes.subarray(0, end - 1);
      await fs.promises.writeFile(path.join(dir, LOG_FILE_NAME), torn);
      const { storage, restored, recovery } = await RaftStorage.open(dir, { fsync: false });
      assert.deepEqual(plain(restored), plain(modelAfter(SAVES)));
      assert.equal(recovery.truncated_tail_bytes, torn.length - start);
      await storage.close();
    } finally {
      await removeDir(dir);
    }
  });
});
