/**
 * RaftStorage on the in-memory faulty disk (test/support/faulty_disk.ts),
 * driven by a virtual clock: random saves, crashes at random moments, failed
 * fsyncs and corruption at rest, then recovery is checked against a model of
 * the saves issued. STORAGE_TEST_SEED=<n> runs that one seed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HardState } from '../../src/raft/types';
import { type OpenResult, RaftStorage } from '../../src/storage';
import { StorageCorruptError, StorageIoError, StorageLockedError } from '../../src/util/errors';
import { SeededRandom } from '../../src/util/prng';
import type { LogEntry } from '../../src/raft/protocol';
import { EventQueue } from '../sim/event_queue';
import {
  FAULTY_DISK_DEFAULTS,
  FaultyDisk,
  type FaultyDiskOptions,
  type Schedule,
} from '../support/faulty_disk';
import {
  applyToModel,
  emptyModel,
  type ModelLog,
  plain,
  type Save,
} from '../support/storage_model';

const DATA_DIR = '/data/node-1';
const LOG_PATH = `${DATA_DIR}/raft.wal`;

/** A virtual clock: callbacks run in time order, with every microtask drained after each. */
class VirtualLoop {
  now_ms = 0;
  private readonly queue = new EventQueue();

  readonly schedule: Schedule = (delay_ms, run) => this.queue.push(this.now_ms + delay_ms, run);

  /**
   * Runs events until `done()` holds or nothing is left to run before `until_ms` (virtual time then
   * stands at `until_ms`, if finite).
   */
  async runUntil(done: () => boolean, until_ms = Infinity): Promise<void> {
    await drainMicrotasks();
    while (!done()) {
      if (this.queue.peekTime() > until_ms) {
        this.now_ms = until_ms;
        return;
      }
      const event = this.queue.pop();
      if (event === undefined) return;
      this.now_ms = event.time;
      event.run();
      await drainMicrotasks();
    }
  }

  /** Runs the loop until `promise` settles; fails if it is still pending when nothing is left. */
  async drive<T>(promise: Promise<T>, what: string): Promise<T> {
    let settled = false;
    const tracked = promise.finally(() => {
      settled = true;
    });
    tracked.catch(() => undefined);
    await this.runUntil(() => settled);
    assert.ok(settled, `${what} never settled (virtual time ${this.now_ms} ms)`);
    return tracked;
  }
}

function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function seedsToRun(count: number, first: number): number[] {
  const only = process.env.STORAGE_TEST_SEED;
  if (only !== undefined) return [Number(only)];
  return Array.from({ length: count }, (_, i) => first + i);
}

/** What recovery must return: a prefix of `saves` at least `acked` long, on top of `base`. */
interface Expectation {
  base: ModelLog;
  base_records: number;
  saves: Save[];
  acked: number;
}

/**
 * Null if the recovered state is base plus exactly the first k saves for some k in [acked,
 * saves.length]; otherwise what is wrong. Every save writes one record, so records counts k.
 */
function recoveryViolation(expected: Expectation, opened: OpenResult): string | null {
  const k = opened.recovery.records - expected.base_records;
  if (k < expected.acked)
    return `lost acknowledged saves: recovered ${k} of ${expected.acked} acknowledged`;
  if (k > expected.saves.length)
    return `recovered ${k} saves but only ${expected.saves.length} were issued`;
  const model = expected.saves.slice(0, k).reduce(applyToModel, expected.base);
  try {
    assert.deepEqual(plain(opened.restored), plain(model));
  } catch {
    return `recovered state is not the state after the first ${k} saves`;
  }
  if ((opened.recovery.torn_reason === null) !== (opened.recovery.truncated_tail_bytes === 0))
    return `torn_reason ${opened.recovery.torn_reason} disagrees with the truncated bytes`;
  return null;
}

function randomEntry(random: SeededRandom, term: number): LogEntry {
  // Mostly small, sometimes spanning several 512-byte sectors so tears land inside records.
  const bytes = random.int(8) === 0 ? 300 + random.int(1500) : random.int(100);
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 1) data[i] = random.int(256);
  return { term, data };
}

/** A random save valid against a log of `last_index` entries; never empty: it writes a record. */
function randomSave(random: SeededRandom, last_index: number): Save {
  const term = random.int(6);
  const hard_state: HardState | null =
    random.int(3) === 0 ? null : { term, vote: random.int(4), commit: random.int(20) };
  if (hard_state !== null && random.int(3) === 0) return { hard_state, entries: null };
  const back = random.int(4) === 0 ? 1 + random.int(Math.min(last_index, 5) + 1) : 0;
  const first_index = Math.max(1, last_index + 1 - back);
  const entries = Array.from({ length: random.int(5) }, () => randomEntry(random, term));
  return { hard_state, entries: { first_index, entries } };
}

interface Workload {
  saves: Save[];
  acked: number;
  /** Index of the first save that rejected, or null. */
  first_rejected: number | null;
  /** Saves that resolved after an earlier one rejected, or out of order. */
  order_violations: string[];
}

/**
 * Issues up to `saves_max` random saves at random virtual times, then at `crash_at_ms` (or once
 * everything settled, if that comes first) ends the incarnation: a power loss, or if `kill` only
 * the process dies.
 */
async function runWorkload(
  loop: VirtualLoop,
  disk: FaultyDisk,
  storage: RaftStorage,
  base: ModelLog,
  random: SeededRandom,
  crash_at_ms: number,
  kill = false,
): Promise<Workload> {
  const work: Workload = { saves: [], acked: 0, first_rejected: null, order_violations: [] };
  let crashed = false;
  let issued_model = base;
  let at_ms = loop.now_ms;
  const saves_max = 1 + random.int(30);
  for (let i = 0; i < saves_max; i += 1) {
    at_ms += random.int(5);
    loop.schedule(at_ms - loop.now_ms, () => {
      if (crashed) return;
      const save = randomSave(random, issued_model.entries.length);
      issued_model = applyToModel(issued_model, save);
      const index = work.saves.length;
      work.saves.push(save);
      storage.save(save.hard_state, save.entries).then(
        () => {
          if (work.acked !== index || work.first_rejected !== null)
            work.order_violations.push(`save ${index} resolved after ${work.acked} acked`);
          work.acked = index + 1;
        },
        (error: unknown) => {
          if (!(error instanceof StorageIoError))
            work.order_violations.push(`save ${index} rejected with ${String(error)}`);
          work.first_rejected ??= index;
        },
      );
    });
  }
  loop.schedule(crash_at_ms, () => {
    crashed = true;
  });
  await loop.runUntil(() => crashed);
  if (kill) disk.killProcess();
  else disk.crash();
  return work;
}

function openOn(loop: VirtualLoop, disk: FaultyDisk): Promise<OpenResult> {
  return loop.drive(RaftStorage.openWithIo(DATA_DIR, {}, disk.io(loop.schedule)), 'open');
}

/**
 * Opens the log in a new incarnation. An open whose write or fdatasync failed (StorageIoError) is
 * a dead process: the disk crashes and the open is retried, as a supervisor would restart it. An
 * open may also be interrupted by a crash or a process kill at a random moment (1 in 4).
 */
async function openThroughFailures(
  disk: FaultyDisk,
  random: SeededRandom,
  kill_probability: number,
): Promise<{ loop: VirtualLoop; opened: OpenResult }> {
  for (let attempt = 1; ; attempt += 1) {
    const loop = new VirtualLoop();
    const interrupt_at_ms = attempt < 10 && random.int(4) === 0 ? random.int(20) : Infinity;
    const kill = random.float() < kill_probability;
    let settled = false;
    const opening = RaftStorage.openWithIo(DATA_DIR, {}, disk.io(loop.schedule)).finally(() => {
      settled = true;
    });
    opening.catch(() => undefined);
    await loop.runUntil(() => settled, interrupt_at_ms);
    if (!settled) {
      if (kill) disk.killProcess();
      else disk.crash();
      continue;
    }
    try {
      return { loop, opened: await opening };
    } catch (error) {
      if (!(error instanceof StorageIoError) || attempt >= 20) throw error;
      disk.crash();
    }
  }
}

interface CrashRunResult {
  violations: string[];
  torn_truncations: number;
  rejected_runs: number;
  /** The log's durable image at the end, hex: equal runs of one seed must agree. */
  final_durable: string;
}

/**
 * One seed: several incarnations, each opening the log, checking what it recovered, running a
 * workload and crashing.
 */
async function crashRun(
  seed: number,
  options: Partial<FaultyDiskOptions>,
  kill_probability = 0,
): Promise<CrashRunResult> {
  const random = new SeededRandom(seed);
  const disk = new FaultyDisk(new SeededRandom(seed ^ 0x5eed5eed), options);
  const result: CrashRunResult = {
    violations: [],
    torn_truncations: 0,
    rejected_runs: 0,
    final_durable: '',
  };
  let expected: Expectation = { base: emptyModel(), base_records: 0, saves: [], acked: 0 };
  const incarnations = 2 + random.int(4);
  for (let incarnation = 0; incarnation <= incarnations; incarnation += 1) {
    const { loop, opened } = await openThroughFailures(disk, random, kill_probability);
    const violation = recoveryViolation(expected, opened);
    if (violation !== null) result.violations.push(`incarnation ${incarnation}: ${violation}`);
    if (opened.recovery.truncated_tail_bytes > 0) result.torn_truncations += 1;
    if (incarnation === incarnations || violation !== null) break;
    const base = plain(opened.restored);
    const base_model: ModelLog = {
      hard_state: base.hard_state,
      entries: opened.restored.entries,
    };
    const kill = random.float() < kill_probability;
    const crash_at_ms = random.int(80);
    const work = await runWorkload(
      loop,
      disk,
      opened.storage,
      base_model,
      random,
      crash_at_ms,
      kill,
    );
    result.violations.push(...work.order_violations);
    if (work.first_rejected !== null) result.rejected_runs += 1;
    expected = {
      base: base_model,
      base_records: opened.recovery.records,
      saves: work.saves,
      acked: work.acked,
    };
  }
  result.final_durable = disk.image(LOG_PATH, 'durable')?.toString('hex') ?? '';
  return result;
}

describe('RaftStorage on a faulty disk', () => {
  it('recovers exactly a prefix of the saves issued, at least the acknowledged ones', async (t) => {
    let torn_truncations = 0;
    for (const seed of seedsToRun(150, 1)) {
      const result = await crashRun(seed, {});
      assert.deepEqual(result.violations, [], `seed ${seed}`);
      torn_truncations += result.torn_truncations;
    }
    t.diagnostic(`incarnations that truncated a torn tail: ${torn_truncations}`);
    // The torn-tail path must actually run: tears land inside records in some seeds.
    if (process.env.STORAGE_TEST_SEED === undefined)
      assert.ok(torn_truncations > 10, `only ${torn_truncations} torn tails truncated`);
  });

  it('a failed fdatasync fails that save and every later one; a restart recovers', async (t) => {
    let rejected_runs = 0;
    for (const seed of seedsToRun(60, 1000)) {
      const result = await crashRun(seed, { datasync_failure_probability: 0.15 });
      assert.deepEqual(result.violations, [], `seed ${seed}`);
      rejected_runs += result.rejected_runs;
    }
    t.diagnostic(
      `incarnations whose saves were rejected after a failed fdatasync: ${rejected_runs}`,
    );
    if (process.env.STORAGE_TEST_SEED === undefined)
      assert.ok(rejected_runs > 10, `only ${rejected_runs} runs saw a failed fdatasync`);
  });

  it('survives slow disks (latency spikes) with the same guarantees', async () => {
    for (const seed of seedsToRun(30, 2000)) {
      const result = await crashRun(seed, { slow_probability: 0.2 });
      assert.deepEqual(result.violations, [], `seed ${seed}`);
    }
  });

  it('killed processes (page cache kept), failed writes and fsyncs: same guarantees', async () => {
    const faults = { write_failure_probability: 0.05, datasync_failure_probability: 0.05 };
    for (const seed of seedsToRun(80, 4000)) {
      const result = await crashRun(seed, faults, 0.5);
      assert.deepEqual(result.violations, [], `seed ${seed}`);
    }
  });

  it('records replayed from the page cache of a killed process are made durable', async () => {
    const disk = new FaultyDisk(new SeededRandom(21), {
      crash_keep_unsynced_probability: 0,
      torn_write_probability: 0,
    });
    const loop = new VirtualLoop();
    const first = await openOn(loop, disk);
    // The save's write completes; its fdatasync is still running when the process dies.
    disk.options.datasync_latency = { min_ms: 1000, max_ms: 1000 };
    void first.storage.save({ term: 4, vote: 2, commit: 0 }, null);
    await loop.runUntil(() => false, 100);
    disk.killProcess();
    disk.options.datasync_latency = FAULTY_DISK_DEFAULTS.datasync_latency;
    const second = await openOn(new VirtualLoop(), disk);
    assert.equal(second.recovery.records, 1, 'the killed process wrote the save to the cache');
    // This process now acts on term 4: a power loss must not take it back.
    disk.crash();
    const third = await openOn(new VirtualLoop(), disk);
    assert.equal(third.recovery.records, 1);
    assert.equal(third.restored.hard_state.term, 4);
  });

  it('a log whose name was never made durable is made durable by the next open', async () => {
    const disk = new FaultyDisk(new SeededRandom(22), { crash_lose_new_file_probability: 1 });
    const loop = new VirtualLoop();
    // Dies after the new log's header is durable, before its directory is synced.
    void RaftStorage.openWithIo(DATA_DIR, {}, disk.io(loop.schedule));
    await loop.runUntil(() => (disk.image(LOG_PATH, 'durable')?.length ?? 0) > 0);
    disk.killProcess();
    const second_loop = new VirtualLoop();
    const second = await openOn(second_loop, disk);
    await second_loop.drive(second.storage.save({ term: 5, vote: 1, commit: 0 }, null), 'save');
    disk.crash();
    const third = await openOn(new VirtualLoop(), disk);
    assert.equal(third.restored.hard_state.term, 5, 'an acknowledged save survives');
  });

  it('replays exactly from its seed', async () => {
    const faults = { datasync_failure_probability: 0.1, slow_probability: 0.1 };
    for (const seed of seedsToRun(5, 5000)) {
      const first = await crashRun(seed, faults, 0.3);
      assert.ok(first.final_durable.length > 0, `seed ${seed}`);
      assert.deepEqual(await crashRun(seed, faults, 0.3), first, `seed ${seed}`);
    }
  });

  it('locks the data directory until the holder dies', async () => {
    const disk = new FaultyDisk(new SeededRandom(11));
    const loop = new VirtualLoop();
    const first = await openOn(loop, disk);
    await assert.rejects(openOn(loop, disk), StorageLockedError);
    disk.killProcess();
    const second = await openOn(new VirtualLoop(), disk);
    assert.equal(second.recovery.records, 0);
    // The dead incarnation's operations never settle.
    let settled = false;
    void first.storage.save({ term: 1, vote: 1, commit: 0 }, null).finally(() => {
      settled = true;
    });
    await loop.runUntil(() => settled);
    assert.equal(settled, false);
  });

  it('refuses to start when a durable record before the last is corrupted at rest', async (t) => {
    let corrupted = 0;
    for (const seed of seedsToRun(80, 3000)) {
      const random = new SeededRandom(seed);
      const disk = new FaultyDisk(new SeededRandom(seed ^ 0x5eed5eed));
      const loop = new VirtualLoop();
      const opened = await openOn(loop, disk);
      await runWorkload(loop, disk, opened.storage, emptyModel(), random, random.int(80));
      const spans = disk.image(LOG_PATH, 'durable') === null ? [] : disk.walRecords(LOG_PATH);
      const damage = disk.corruptRandomDurableRecord(LOG_PATH);
      if (damage === null) continue;
      corrupted += 1;
      const record_offset = spans[damage.record_index]?.offset;
      const reopen = new VirtualLoop();
      await assert.rejects(openOn(reopen, disk), (error: unknown) => {
        assert.ok(error instanceof StorageCorruptError, `seed ${seed}: got ${String(error)}`);
        assert.match(error.message, new RegExp(`byte offset ${record_offset}\\b`), `seed ${seed}`);
        return true;
      });
    }
    t.diagnostic(`seeds with a corrupted record: ${corrupted}`);
    if (process.env.STORAGE_TEST_SEED === undefined)
      assert.ok(corrupted > 40, `only ${corrupted} seeds had two durable records to damage`);
  });
});

describe('FaultyDisk files', () => {
  it('reads what was written; a gap or an extending truncate reads as zeros', async () => {
    const disk = new FaultyDisk(new SeededRandom(31));
    const loop = new VirtualLoop();
    const io = disk.io(loop.schedule);
    assert.equal(await loop.drive(io.makeDirectory('/a/b'), 'mkdir'), '/a');
    assert.equal(await loop.drive(io.makeDirectory('/a/b'), 'mkdir'), undefined);
    const file = await loop.drive(io.openLog('/a/b/f'), 'open');
    const run = <T>(promise: Promise<T>): Promise<T> => loop.drive(promise, 'file operation');
    await run(file.write(Buffer.from('abcdef'), 0));
    await run(file.truncate(2));
    await run(file.write(Buffer.from('xy'), 4));
    await run(file.truncate(8));
    const target = Buffer.alloc(10, 0xee);
    assert.equal(await run(file.read(target, 1, 9, 0)), 8);
    assert.deepEqual([...target], [0xee, 97, 98, 0, 0, 120, 121, 0, 0, 0xee]);
    assert.equal(await run(file.size()), 8);
    await assert.rejects(loop.drive(io.openLog('/missing/f'), 'open'), /ENOENT/);
  });

  it('power loss after a rename over a durable name leaves one of the two files', async () => {
    // Sim seed 721496222 (5 nodes): the model let both vanish, so a WAL rewrite interrupted
    // between its rename and the directory fsync "lost" the hard state it had saved.
    const seen = new Set<string>();
    for (let seed = 1; seed <= 40; seed++) {
      const disk = new FaultyDisk(new SeededRandom(seed), { crash_lose_new_file_probability: 1 });
      const loop = new VirtualLoop();
      const io = disk.io(loop.schedule);
      const run = <T>(promise: Promise<T>): Promise<T> => loop.drive(promise, 'file operation');
      await run(io.makeDirectory('/d'));
      const old_file = await run(io.openLog('/d/wal'));
      await run(old_file.write(Buffer.from('old'), 0));
      await run(old_file.datasync());
      await run(io.syncDirectory('/d'));
      const new_file = await run(io.openLog('/d/wal.tmp'));
      await run(new_file.write(Buffer.from('new'), 0));
      await run(new_file.datasync());
      await run(io.rename('/d/wal.tmp', '/d/wal'));
      disk.crash();
      const after = disk.io(loop.schedule);
      assert.ok((await run(after.listDirectory('/d'))).includes('wal'), `seed ${seed}: wal lost`);
      const file = await run(after.openLog('/d/wal'));
      const bytes = Buffer.alloc(3);
      await run(file.read(bytes, 0, 3, 0));
      seen.add(bytes.toString());
    }
    assert.deepEqual([...seen].sort(), ['new', 'old']);
  });
});

describe('The faulty-disk checks can fail', () => {
  it('an fdatasync that makes nothing durable is caught by the durability check', async (t) => {
    let caught = 0;
    for (const seed of seedsToRun(40, 1)) {
      const result = await crashRun(seed, { bug_datasync_not_durable: true });
      if (result.violations.some((violation) => /lost acknowledged saves/.test(violation)))
        caught += 1;
    }
    t.diagnostic(`seeds that caught the lost-write bug: ${caught} of 40`);
    assert.ok(caught > 5, `the lost-durable-write bug was caught in only ${caught} seeds`);
  });

  it('the recovery check rejects a save never issued and a changed state', () => {
    const save: Save = { hard_state: { term: 1, vote: 1, commit: 0 }, entries: null };
    const expected: Expectation = { base: emptyModel(), base_records: 0, saves: [save], acked: 0 };
    const recovered = (records: number, term: number): OpenResult =>
      ({
        storage: undefined,
        restored: { hard_state: { term, vote: 1, commit: 0 }, entries: [] },
        recovery: { records, truncated_tail_bytes: 0, torn_reason: null, log_file: LOG_PATH },
      }) as unknown as OpenResult;
    assert.equal(recoveryViolation(expected, recovered(1, 1)), null);
    assert.match(recoveryViolation(expected, recovered(2, 1)) ?? '', /only 1 were issued/);
    assert.match(recoveryViolation(expected, recovered(1, 2)) ?? '', /not the state after/);
  });

  it('without torn writes no torn tail is truncated (the torn count is not vacuous)', async () => {
    let torn_truncations = 0;
    for (const seed of seedsToRun(40, 1)) {
      const result = await crashRun(seed, { torn_write_probability: 0 });
      assert.deepEqual(result.violations, [], `seed ${seed}`);
      torn_truncations += result.torn_truncations;
    }
    assert.equal(torn_truncations, 0);
  });

  it('damage in the last durable record is truncated as torn (documented limit)', async () => {
    const disk = new FaultyDisk(new SeededRandom(7), { crash_keep_unsynced_probability: 0 });
    const loop = new VirtualLoop();
    const opened = await openOn(loop, disk);
    const saves = [1, 2, 3].map((term) => opened.storage.save({ term, vote: 1, commit: 0 }, null));
    await loop.drive(Promise.all(saves), 'saves');
    const last = disk.walRecords(LOG_PATH).length - 1;
    disk.corruptDurableRecord(LOG_PATH, last, true);
    disk.crash();
    const reopened = await openOn(new VirtualLoop(), disk);
    assert.equal(reopened.recovery.records, 2);
    assert.ok(reopened.recovery.truncated_tail_bytes > 0);
    assert.equal(reopened.restored.hard_state.term, 2);
  });
});
