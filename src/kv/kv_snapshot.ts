/**
 * A snapshot of the state machine taken while it keeps applying entries: the bytes describe the
 * state as of the index where the snapshot began, yet no step blocks the event loop for long.
 *
 * Copy-on-write: while a snapshot runs, the state machine calls `preserve` before it changes or
 * deletes a key; the first change of a key the cursor has not yet written records the key's
 * pre-image (stored value and deadline). A key's stored value carries the index that last
 * changed it, so "changed since the snapshot began" is `mod_index > index`: such a key is
 * written from its pre-image, or skipped when it has none (it was inserted later).
 *
 * The keys are written in ascending byte order, so equal states give equal bytes and "has the
 * cursor passed this key" is one string comparison. Work happens in bounded steps:
 *   collect  copy the key names out of the live map (a live iterator: keys inserted later show
 *            up at its end and are filtered out; a key deleted and re-inserted shows up twice,
 *            and is written once, below);
 *   sort     a bottom-up merge sort, `snapshot_step_keys_max` keys moved per step;
 *   emit     `next()` returns chunks of about `snapshot_encode_chunk_bytes` bytes.
 * FLUSHALL during a snapshot hands the cursor the old maps (`detach`), which nothing changes
 * after that.
 *
 * Layout (version 3), integers little-endian:
 *   "KVSM" magic, version u8 (3), last_applied u64, clock_ms u64, tombstone_floor u64,
 *   key_count u32, then per key in strictly ascending byte order:
 *     [key_len u32][stored_len u32][deadline_ms u64, 0 = none][key][stored value]
 *   (the stored value as kept in memory, see stored_value.ts), then tombstone_count u32 and,
 *   oldest first, [key_len u32][key][index u64].
 * Versions 1 and 2 (per-word buffers, before this layout) are rejected with an error that says
 * so: no deployment holds them.
 */
import { assert } from '../util/assert';
import { StorageCorruptError } from '../util/errors';
import { LIMITS } from '../util/limits';
import { storedModIndex, storedProblem, storedValueBytes } from './stored_value';

export const KV_SNAPSHOT_VERSION = 3;
const MAGIC = Buffer.from('KVSM', 'latin1');
const HEADER_BYTES = MAGIC.length + 1 + 8 * 3 + 4;
const RECORD_FIXED_BYTES = 4 + 4 + 8;
const U32_BYTES = 4;
const U64_BYTES = 8;
const TWO_TO_32 = 2 ** 32;

/** The maps a snapshot reads keys from. */
export interface KvMaps {
  values: Map<string, string>;
  deadlines: Map<string, number>;
}

/** Everything a state machine is rebuilt from. */
export interface KvParts extends KvMaps {
  applied_index: number;
  clock_ms: number;
  tombstone_floor: number;
  tombstones: Map<string, number>;
  stored_bytes: number;
}

interface PreImage {
  stored: string;
  deadline: number | undefined;
}

type Phase = 'collect' | 'sort' | 'emit' | 'done';

/** Work per step (tests shrink them to interleave steps with writes at every point). */
export interface SnapshotSteps {
  keys_per_step: number;
  chunk_bytes: number;
}

const DEFAULT_STEPS: SnapshotSteps = {
  keys_per_step: LIMITS.snapshot_step_keys_max,
  chunk_bytes: LIMITS.snapshot_encode_chunk_bytes,
};

export class KvSnapshotCursor {
  readonly index: number;
  private phase: Phase = 'collect';
  private readonly cow = new Map<string, PreImage>();
  private readonly header: Buffer;
  private readonly trailer: Buffer;
  private readonly key_count: number;
  private collect_iterator: IterableIterator<[string, string]>;
  private keys: string[] = [];
  private sorter: MergeSorter | null = null;
  private position = 0;
  private emitted = 0;
  private last_emitted: string | null = null;
  private header_sent = false;
  private readonly chunk: ChunkBuilder;

  constructor(
    private base: KvMaps,
    parts: Omit<KvParts, keyof KvMaps | 'stored_bytes'>,
    private readonly onFinish: (cursor: KvSnapshotCursor) => void,
    private readonly steps: SnapshotSteps = DEFAULT_STEPS,
  ) {
    assert(steps.keys_per_step >= 1 && steps.chunk_bytes >= 1, 'snapshot steps do some work');
    this.index = parts.applied_index;
    this.key_count = base.values.size;
    this.header = Buffer.allocUnsafe(HEADER_BYTES);
    MAGIC.copy(this.header, 0);
    this.header[MAGIC.length] = KV_SNAPSHOT_VERSION;
    writeU64(this.header, MAGIC.length + 1, parts.applied_index);
    writeU64(this.header, MAGIC.length + 9, parts.clock_ms);
    writeU64(this.header, MAGIC.length + 17, parts.tombstone_floor);
    this.header.writeUInt32LE(this.key_count, MAGIC.length + 25);
    this.trailer = encodeTombstones(parts.tombstones);
    this.collect_iterator = base.values.entries();
    this.chunk = new ChunkBuilder(steps.chunk_bytes);
  }

  /** Whether the cursor is ready to emit (then `next` may be called) or finished. */
  get prepared(): boolean {
    return this.phase === 'emit' || this.phase === 'done';
  }

  /** One bounded step of collecting and sorting the keys; true once `next` may be called. */
  prepare(): boolean {
    if (this.phase === 'collect') this.collectStep();
    else if (this.phase === 'sort') {
      assert(this.sorter !== null, 'a sort phase has a sorter');
      if (this.sorter.step(this.steps.keys_per_step)) {
        this.keys = this.sorter.result();
        this.sorter = null;
        this.phase = 'emit';
      }
    }
    return this.prepared;
  }

  /**
   * The next chunk of the snapshot's bytes, or null after the last one. The chunk is valid only
   * until the next call: its buffer is reused, so that a snapshot does not allocate its size in
   * fresh external memory (which would make V8 run extra full collections).
   */
  next(): Buffer | null {
    assert(this.prepared, 'next() before the cursor is prepared');
    if (this.phase === 'done') return null;
    const chunk = this.chunk;
    chunk.reset();
    if (!this.header_sent) {
      chunk.append(this.header);
      this.header_sent = true;
    }
    while (this.position < this.keys.length && this.emitKey(chunk));
    if (this.position === this.keys.length) {
      assert(
        this.emitted === this.key_count,
        `snapshot at ${this.index} wrote ${this.emitted} keys, not ${this.key_count}`,
      );
      chunk.append(this.trailer);
      this.finish();
    }
    return chunk.take();
  }

  /** Called before `key` (now `stored`, or absent) is changed or deleted. */
  preserve(key: string, stored: string | undefined, deadline: number | undefined): void {
    if (stored === undefined || storedModIndex(stored) > this.index) return;
    if (this.last_emitted !== null && key <= this.last_emitted) return;
    if (this.cow.has(key)) return;
    this.cow.set(key, { stored, deadline });
  }

  /** The state machine is about to drop these maps (FLUSHALL): they are the cursor's now. */
  detach(frozen: KvMaps): void {
    assert(frozen.values === this.base.values, 'detach hands over the maps being read');
    this.base = frozen;
  }

  /** Stops: the state machine records no more pre-images for this cursor. */
  finish(): void {
    if (this.phase === 'done') return;
    this.phase = 'done';
    this.keys = [];
    this.sorter = null;
    this.cow.clear();
    this.onFinish(this);
  }

  private collectStep(): void {
    for (let n = 0; n < this.steps.keys_per_step; n++) {
      const next = this.collect_iterator.next();
      if (next.done === true) {
        // Keys deleted (and not re-inserted) before the iterator reached them.
        for (const key of this.cow.keys()) if (!this.base.values.has(key)) this.keys.push(key);
        this.sorter = new MergeSorter(this.keys);
        this.keys = [];
        this.phase = 'sort';
        return;
      }
      const [key, stored] = next.value;
      if (storedModIndex(stored) <= this.index || this.cow.has(key)) this.keys.push(key);
    }
  }

  /**
   * Writes the next key's record into `chunk`; false, consuming nothing, if the chunk has no room
   * for it. A record goes whole into one chunk, so the chunk's buffer never grows (but for a record
   * larger than a chunk, alone in its own): before, the record crossing the capacity grew the
   * buffer and the next chunk allocated a new one, two 256 KiB allocations per chunk.
   */
  private emitKey(chunk: ChunkBuilder): boolean {
    const key = this.keys[this.position];
    assert(key !== undefined, 'position within the keys');
    if (key === this.last_emitted) {
      this.position++; // collected twice (deleted and re-inserted)
      return true;
    }
    let stored: string | undefined;
    let deadline: number | undefined;
    const pre = this.cow.get(key);
    if (pre !== undefined) ({ stored, deadline } = pre);
    else {
      stored = this.base.values.get(key);
      assert(
        stored !== undefined && storedModIndex(stored) <= this.index,
        'a key unchanged since the snapshot began is in the map as it was',
      );
      deadline = this.base.deadlines.get(key);
    }
    const size = RECORD_FIXED_BYTES + key.length + stored.length;
    if (!chunk.fits(size)) return false;
    if (pre !== undefined) this.cow.delete(key);
    this.position++;
    const at = chunk.reserve(size);
    const out = chunk.buffer;
    out.writeUInt32LE(key.length, at);
    out.writeUInt32LE(stored.length, at + U32_BYTES);
    writeU64(out, at + 2 * U32_BYTES, deadline ?? 0);
    out.write(key, at + RECORD_FIXED_BYTES, 'latin1');
    out.write(stored, at + RECORD_FIXED_BYTES + key.length, 'latin1');
    this.last_emitted = key;
    this.emitted++;
    return true;
  }
}

type ParsePhase = 'header' | 'keys' | 'tombstone_count' | 'tombstones' | 'end';

/**
 * Parses a version-3 snapshot from its bytes in order, chunk by chunk, so a restart never holds the
 * whole file as well as the state built from it (a 1M-key snapshot is ~130 MB). Keys and values are
 * copied into their own strings: nothing keeps a chunk alive. `total_bytes` (the state's size)
 * bounds the counts it reads, as when parsing a whole buffer. Throws StorageCorruptError on
 * anything malformed, at the latest in `finish`.
 */
export class KvSnapshotParser {
  private phase: ParsePhase = 'header';
  /** Bytes received and not yet parsed: less than the next unit (a record, a header, ...). */
  private waiting: Buffer[] = [];
  private waiting_bytes = 0;
  /** Bytes the next unit needs, when known (0: parse at the next push). */
  private needed_bytes = 0;
  /** Offset in the snapshot of the first waiting byte. */
  private input_at = 0;
  private readonly parts: KvParts = {
    applied_index: 0,
    clock_ms: 0,
    tombstone_floor: 0,
    values: new Map(),
    deadlines: new Map(),
    tombstones: new Map(),
    stored_bytes: 0,
  };
  private left = 0;
  private parsed = 0;
  private previous_key: string | null = null;

  constructor(private readonly total_bytes: number) {}

  /**
   * The next bytes of the snapshot. The parser may keep `chunk` (until what it holds is parsed):
   * the caller must not change it afterwards.
   */
  push(chunk: Buffer): void {
    this.waiting.push(chunk);
    this.waiting_bytes += chunk.length;
    // A large record spans many chunks: they are joined once, when it is complete.
    if (this.waiting_bytes < this.needed_bytes) return;
    const input = this.waiting.length === 1 ? chunk : Buffer.concat(this.waiting);
    const reader = new Reader(input, this.input_at, this.total_bytes);
    for (;;) {
      const unit = this.unitBytes(reader);
      if (unit === null || reader.available < unit) break;
      this.parseUnit(reader);
    }
    if (this.phase === 'end') reader.expectEnd();
    const rest = input.subarray(reader.position);
    this.waiting = rest.length === 0 ? [] : [rest];
    this.waiting_bytes = rest.length;
    this.input_at += reader.position;
    this.needed_bytes = this.unitBytes(reader) ?? 0;
  }

  /** The parsed state, once every byte was pushed. */
  finish(): KvParts {
    const input = Buffer.concat(this.waiting);
    const reader = new Reader(input, this.input_at, this.total_bytes);
    // Whatever is incomplete fails here with the reader's "truncated ..." error.
    while (this.phase !== 'end') this.parseUnit(reader);
    reader.expectEnd();
    return this.parts;
  }

  /** Bytes the next unit needs, or null if that is not known until more bytes arrive. */
  private unitBytes(peek: Reader): number | null {
    switch (this.phase) {
      case 'header':
        return HEADER_BYTES;
      case 'keys':
        if (peek.available < 2 * U32_BYTES) return null;
        return RECORD_FIXED_BYTES + peek.peekU32(0) + peek.peekU32(U32_BYTES);
      case 'tombstone_count':
        return U32_BYTES;
      case 'tombstones':
        if (peek.available < U32_BYTES) return null;
        return U32_BYTES + peek.peekU32(0) + U64_BYTES;
      case 'end':
        return null;
    }
  }

  private parseUnit(reader: Reader): void {
    if (this.phase === 'header') this.parseHeader(reader);
    else if (this.phase === 'keys') this.parseRecord(reader);
    else if (this.phase === 'tombstone_count') {
      this.left = reader.count('tombstone count', U32_BYTES + U64_BYTES);
      this.parsed = 0;
      this.phase = this.left === 0 ? 'end' : 'tombstones';
    } else if (this.phase === 'tombstones') this.parseTombstone(reader);
  }

  private parseHeader(reader: Reader): void {
    if (!reader.bytes(MAGIC.length, 'magic').equals(MAGIC))
      throw new StorageCorruptError('kv snapshot: bad magic');
    const version = reader.u8('version');
    if (version === 1 || version === 2)
      throw new StorageCorruptError(
        `kv snapshot: version ${version} (written before per-key strings) is no longer read; ` +
          `this build reads version ${KV_SNAPSHOT_VERSION}`,
      );
    if (version !== KV_SNAPSHOT_VERSION)
      throw new StorageCorruptError(`kv snapshot: unsupported version ${version}`);
    this.parts.applied_index = reader.u64('last_applied');
    this.parts.clock_ms = reader.u64('clock');
    this.parts.tombstone_floor = reader.u64('tombstone floor');
    this.left = reader.count('key count', RECORD_FIXED_BYTES);
    this.phase = this.left === 0 ? 'tombstone_count' : 'keys';
  }

  private parseRecord(reader: Reader): void {
    const parts = this.parts;
    const key_length = reader.u32('key length');
    const stored_length = reader.u32('value length');
    const deadline = reader.u64('deadline');
    const key = reader.latin1(key_length, 'key');
    const stored = reader.latin1(stored_length, 'value');
    const i = this.parsed++;
    if (this.previous_key !== null && !(this.previous_key < key))
      throw new StorageCorruptError(`kv snapshot: key #${i} is not in strictly ascending order`);
    this.previous_key = key;
    const problem = storedProblem(stored, parts.applied_index);
    if (problem !== null) throw new StorageCorruptError(`kv snapshot: key #${i}: ${problem}`);
    parts.values.set(key, stored);
    if (deadline !== 0) parts.deadlines.set(key, deadline);
    parts.stored_bytes += key.length + storedValueBytes(stored);
    if (--this.left === 0) this.phase = 'tombstone_count';
  }

  private parseTombstone(reader: Reader): void {
    const key = reader.latin1(reader.u32('tombstone key length'), 'tombstone key');
    const i = this.parsed++;
    if (this.parts.values.has(key) || this.parts.tombstones.has(key))
      throw new StorageCorruptError(`kv snapshot: tombstone #${i} duplicates a key`);
    this.parts.tombstones.set(key, reader.u64('tombstone index'));
    if (--this.left === 0) this.phase = 'end';
  }
}

function encodeTombstones(tombstones: Map<string, number>): Buffer {
  let total = U32_BYTES;
  for (const key of tombstones.keys()) total += U32_BYTES + key.length + U64_BYTES;
  const out = Buffer.allocUnsafe(total);
  out.writeUInt32LE(tombstones.size, 0);
  let at = U32_BYTES;
  for (const [key, index] of tombstones) {
    out.writeUInt32LE(key.length, at);
    out.write(key, at + U32_BYTES, 'latin1');
    at += U32_BYTES + key.length;
    writeU64(out, at, index);
    at += U64_BYTES;
  }
  return out;
}

function writeU64(out: Buffer, at: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 field ${value}`);
  out.writeUInt32LE(value % TWO_TO_32, at);
  out.writeUInt32LE(Math.floor(value / TWO_TO_32), at + U32_BYTES);
}

/** One output chunk: records are appended until it is full; a larger record gets its own. */
class ChunkBuilder {
  buffer: Buffer;
  private used = 0;

  constructor(private readonly capacity: number) {
    this.buffer = Buffer.allocUnsafeSlow(capacity);
  }

  reset(): void {
    this.used = 0;
    // A record larger than a chunk grew the buffer: do not keep that much.
    if (this.buffer.length > this.capacity) this.buffer = Buffer.allocUnsafeSlow(this.capacity);
  }

  /** Whether `length` more bytes fit without growing the buffer (always, into an empty chunk). */
  fits(length: number): boolean {
    return this.used === 0 || this.used + length <= this.buffer.length;
  }

  append(bytes: Buffer): void {
    const at = this.reserve(bytes.length); // first: it may replace the buffer
    bytes.copy(this.buffer, at);
  }

  /** Room for `length` bytes; returns where they go. */
  reserve(length: number): number {
    if (this.used + length > this.buffer.length) {
      const grown = Buffer.allocUnsafeSlow(this.used + length);
      this.buffer.copy(grown, 0, 0, this.used);
      this.buffer = grown;
    }
    const at = this.used;
    this.used += length;
    return at;
  }

  take(): Buffer {
    return this.buffer.subarray(0, this.used);
  }
}

/**
 * Bottom-up merge sort of strings (UTF-16 code unit order, which for latin1 keys is byte
 * order), resumable: each `step` moves a bounded number of elements.
 */
export class MergeSorter {
  private static readonly RUN = 512;
  private source: string[];
  private target: string[];
  private run_at = 0;
  private width = MergeSorter.RUN;
  private low = 0;
  private i = 0;
  private j = 0;
  private k = 0;
  private middle = 0;
  private high = 0;

  constructor(items: string[]) {
    this.source = items;
    this.target = new Array<string>(items.length);
    this.startPair(0);
  }

  /** Does up to about `budget` element moves; true once sorted. */
  step(budget: number): boolean {
    const n = this.source.length;
    let work = 0;
    while (this.run_at < n) {
      if (work >= budget) return false;
      const end = Math.min(n, this.run_at + MergeSorter.RUN);
      const run = this.source.slice(this.run_at, end).sort();
      for (let x = 0; x < run.length; x++) this.source[this.run_at + x] = run[x] as string;
      work += end - this.run_at;
      this.run_at = end;
    }
    while (this.width < n) {
      if (work >= budget) return false;
      work += this.mergeSome(budget - work);
      if (this.k === this.high) this.nextPair();
    }
    return true;
  }

  result(): string[] {
    return this.source;
  }

  private mergeSome(budget: number): number {
    const { source, target, middle, high } = this;
    const stop = Math.min(high, this.k + budget);
    let i = this.i;
    let j = this.j;
    let k = this.k;
    while (k < stop) {
      if (i < middle && (j >= high || (source[i] as string) <= (source[j] as string)))
        target[k++] = source[i++] as string;
      else target[k++] = source[j++] as string;
    }
    const moved = k - this.k;
    this.i = i;
    this.j = j;
    this.k = k;
    return Math.max(moved, 1);
  }

  private nextPair(): void {
    const n = this.source.length;
    if (this.low + 2 * this.width < n) {
      this.startPair(this.low + 2 * this.width);
      return;
    }
    [this.source, this.target] = [this.target, this.source];
    this.width *= 2;
    this.startPair(0);
  }

  private startPair(low: number): void {
    const n = this.source.length;
    this.low = low;
    this.i = low;
    this.k = low;
    this.middle = Math.min(n, low + this.width);
    this.j = this.middle;
    this.high = Math.min(n, low + 2 * this.width);
  }
}

/**
 * Reads a window of the snapshot (`input` starts at byte `base` of it, which is `total_bytes`
 * long): errors name offsets in the whole snapshot.
 */
class Reader {
  private offset = 0;

  constructor(
    private readonly input: Buffer,
    private readonly base = 0,
    private readonly total_bytes = input.length,
  ) {}

  get position(): number {
    return this.offset;
  }

  get available(): number {
    return this.input.length - this.offset;
  }

  /** The u32 `ahead` bytes from here, without consuming it (the caller checked it is there). */
  peekU32(ahead: number): number {
    return this.input.readUInt32LE(this.offset + ahead);
  }

  bytes(length: number, what: string): Buffer {
    this.need(length, what);
    const value = this.input.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  latin1(length: number, what: string): string {
    this.need(length, what);
    const value = this.input.toString('latin1', this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  u8(what: string): number {
    this.need(1, what);
    return this.input[this.offset++] as number;
  }

  u32(what: string): number {
    this.need(U32_BYTES, what);
    const value = this.input.readUInt32LE(this.offset);
    this.offset += U32_BYTES;
    return value;
  }

  u64(what: string): number {
    this.need(U64_BYTES, what);
    const low = this.input.readUInt32LE(this.offset);
    const high = this.input.readUInt32LE(this.offset + U32_BYTES);
    this.offset += U64_BYTES;
    const value = high * TWO_TO_32 + low;
    if (high >= 2 ** 21) throw new StorageCorruptError(`kv snapshot: ${what} is out of range`);
    return value;
  }

  /** A u32 count whose items need at least `item_bytes_min` each and must fit the rest. */
  count(what: string, item_bytes_min: number): number {
    const value = this.u32(what);
    if (value > (this.total_bytes - this.base - this.offset) / item_bytes_min) {
      throw new StorageCorruptError(
        `kv snapshot: ${what} ${value} at offset ${this.at(-U32_BYTES)} exceeds the input`,
      );
    }
    return value;
  }

  expectEnd(): void {
    const left = this.input.length - this.offset;
    if (left !== 0)
      throw new StorageCorruptError(`kv snapshot: ${left} trailing bytes at offset ${this.at(0)}`);
  }

  private need(length: number, what: string): void {
    if (length > this.input.length - this.offset)
      throw new StorageCorruptError(`kv snapshot: truncated ${what} at offset ${this.at(0)}`);
  }

  /** The offset in the whole snapshot of `delta` bytes from here. */
  private at(delta: number): number {
    return this.base + this.offset + delta;
  }
}
