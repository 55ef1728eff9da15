/**
 * Test support for the storage tests: the deliberately simple in-memory model
 * of what a log should hold after a sequence of saves, generators of random
 * saves, and temp directories.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import type { EntriesToPersist, HardState, RestoredState } from '../../src/raft/types';
import type { LogEntry } from '../../src/raft/protocol';

export interface Save {
  hard_state: HardState | null;
  entries: EntriesToPersist | null;
}

export interface ModelLog {
  hard_state: HardState;
  entries: LogEntry[];
}

export function emptyModel(): ModelLog {
  return { hard_state: { term: 0, vote: 0, commit: 0 }, entries: [] };
}

export function applyToModel(model: ModelLog, save: Save): ModelLog {
  let entries = model.entries;
  if (save.entries !== null) {
    entries = entries.slice(0, save.entries.first_index - 1).concat(save.entries.entries);
  }
  return { hard_state: save.hard_state ?? model.hard_state, entries };
}

export function modelAfter(saves: readonly Save[]): ModelLog {
  return saves.reduce(applyToModel, emptyModel());
}

/** Comparable plain form: entry data as hex so Buffer and Uint8Array compare equal. */
export function plain(state: RestoredState | ModelLog): {
  hard_state: HardState;
  entries: Array<{ term: number; data: string }>;
} {
  return {
    hard_state: { ...state.hard_state },
    entries: state.entries.map((entry) => ({
      term: entry.term,
      data: Buffer.from(entry.data).toString('hex'),
    })),
  };
}

/**
 * A save shape independent of the log it lands on: `back` says how far
 * before the next index the entries start (0 appends, more truncates).
 */
export interface SaveShape {
  hard_state: HardState | null;
  entries: { back: number; entries: LogEntry[] } | null;
}

export function resolveShape(shape: SaveShape, last_index: number): Save {
  if (shape.entries === null) return { hard_state: shape.hard_state, entries: null };
  const first_index = Math.max(1, last_index + 1 - shape.entries.back);
  return { hard_state: shape.hard_state, entries: { first_index, entries: shape.entries.entries } };
}

/** Turns shapes into concrete saves, each valid against the log the previous ones leave. */
export function resolveShapes(shapes: readonly SaveShape[]): Save[] {
  const saves: Save[] = [];
  let model = emptyModel();
  for (const shape of shapes) {
    const save = resolveShape(shape, model.entries.length);
    saves.push(save);
    model = applyToModel(model, save);
  }
  return saves;
}

const uint32 = fc.integer({ min: 0, max: 0xffffffff });

export const hardStateArbitrary: fc.Arbitrary<HardState> = fc.record({
  term: fc.oneof(fc.integer({ min: 0, max: 20 }), uint32),
  vote: fc.integer({ min: 0, max: 7 }),
  commit: fc.oneof(fc.integer({ min: 0, max: 50 }), uint32),
});

export const entryArbitrary: fc.Arbitrary<LogEntry> = fc.record({
  term: fc.oneof(fc.integer({ min: 0, max: 20 }), uint32),
  data: fc.uint8Array({ maxLength: 80 }),
});

export const saveShapeArbitrary: fc.Arbitrary<SaveShape> = fc.record({
  hard_state: fc.option(hardStateArbitrary, { nil: null }),
  entries: fc.option(
    fc.record({
      back: fc.oneof(
        { weight: 3, arbitrary: fc.constant(0) },
        { weight: 1, arbitrary: fc.integer({ min: 1, max: 12 }) },
      ),
      entries: fc.array(entryArbitrary, { maxLength: 6 }),
    }),
    { nil: null },
  ),
});

export function entryOf(term: number, text: string): LogEntry {
  return { term, data: Buffer.from(text) };
}

export async function tempDir(): Promise<string> {
  return fs.promises.mkdtemp(path.join(os.tmpdir(), 'storage-'));
}

export async function removeDir(dir: string): Promise<void> {
  await fs.promises.rm(dir, { recursive: true, force: true });
}

/**
 * fast-check parameters: STORAGE_TEST_SEED replays a failing run (fast-check prints the seed and
 * path on failure).
 */
export function propertyParameters(num_runs: number): fc.Parameters<unknown> {
  const seed_text = process.env.STORAGE_TEST_SEED;
  return seed_text === undefined
    ? { numRuns: num_runs }
    : { numRuns: num_runs, seed: Number(seed_text) };
}

/** Polls `condition` until it holds or `timeout_ms` passes (then throws `what`). */
export async function waitUntil(
  condition: () => boolean,
  what: string,
  timeout_ms = 5000,
): Promise<void> {
  const deadline_ms = Date.now() + timeout_ms;
  while (!condition()) {
    if (Date.now() > deadline_ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
