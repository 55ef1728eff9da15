/**
 * Snapshot costs for a state machine of N keys (default 1M keys of 100-byte values):
 * - the longest event-loop pause while a snapshot is taken and written (the state machine's
 *   cursor is prepared one bounded step per turn and its chunks written as they are produced,
 *   as the driver does), measured by a 1 ms interval probe, and the longest single step;
 * - the time to load the snapshot into a new state machine (the restart cost before WAL replay);
 * - the heap and RSS holding the keys, and the snapshot's size.
 *
 * Usage: node dist/bench/snapshot.js [keys] [value_bytes]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { encodeCommand } from '../src/kv/command_codec';
import { KvStateMachine } from '../src/kv/state_machine';
import { NODE_STORAGE_IO } from '../src/storage/io';
import { SnapshotStore } from '../src/storage/snapshot_store';

const MIB = 1024 * 1024;

function fill(keys: number, value_bytes: number): KvStateMachine {
  const state = new KvStateMachine();
  const value = Buffer.alloc(value_bytes, 0x61);
  for (let i = 1; i <= keys; i++) {
    const key = Buffer.from(`key:${String(i).padStart(10, '0')}`);
    state.apply(i, encodeCommand({ op: 'set', key, words: [Buffer.from(value)] }));
  }
  return state;
}

/** Runs `work` while a 1 ms interval records the longest gap between its ticks. */
async function longestPause(work: () => Promise<void>): Promise<number> {
  let last = performance.now();
  let longest = 0;
  const probe = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 1);
  await new Promise((resolve) => setTimeout(resolve, 20));
  last = performance.now();
  await work();
  clearInterval(probe);
  return Math.max(longest, performance.now() - last);
}

async function main(): Promise<void> {
  const keys = Number(process.argv[2] ?? 1_000_000);
  const value_bytes = Number(process.argv[3] ?? 100);
  const fill_started = performance.now();
  const state = fill(keys, value_bytes);
  global.gc?.();
  const memory = process.memoryUsage();
  console.log(
    `filled ${keys} keys of ${value_bytes} bytes ` +
      `in ${(performance.now() - fill_started).toFixed(0)} ms; ` +
      `heap ${(memory.heapUsed / MIB).toFixed(0)} MiB, rss ${(memory.rss / MIB).toFixed(0)} MiB`,
  );
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kv-snapshot-bench-'));
  const store = new SnapshotStore(NODE_STORAGE_IO, dir, true);
  let prepare_ms = 0;
  let step_max_ms = 0;
  let total_ms = 0;
  let file_bytes = 0;
  const timed = <T>(step: () => T): T => {
    const started = performance.now();
    const result = step();
    step_max_ms = Math.max(step_max_ms, performance.now() - started);
    return result;
  };
  const pause_ms = await longestPause(async () => {
    const started = performance.now();
    const cursor = state.beginSnapshot();
    while (!timed(() => cursor.prepare())) await new Promise((resolve) => setImmediate(resolve));
    prepare_ms = performance.now() - started;
    const meta = { index: keys, term: 1, voters: [1, 2, 3] };
    const written = await store.writeFrom(meta, { next: () => timed(() => cursor.next()) });
    cursor.finish();
    file_bytes = written.file_bytes;
    total_ms = performance.now() - started;
  });
  console.log(
    `snapshot: collect+sort ${prepare_ms.toFixed(0)} ms, total with write+fsync ` +
      `${total_ms.toFixed(0)} ms, ${(file_bytes / MIB).toFixed(1)} MiB; longest step ` +
      `${step_max_ms.toFixed(1)} ms, longest event-loop pause ${pause_ms.toFixed(1)} ms`,
  );
  const load_started = performance.now();
  // As a restart does: the state is built while the file is read in chunks.
  const loaded = await store.loadNewestWith(
    (file, reason) => console.log(`damaged ${file}: ${reason}`),
    KvStateMachine.snapshotParser,
  );
  if (loaded === null) throw new Error('snapshot did not load');
  console.log(
    `restart: read and restore ${(performance.now() - load_started).toFixed(0)} ms ` +
      `(${loaded.state.key_count} keys)`,
  );
  fs.rmSync(dir, { recursive: true, force: true });
}

void main();
