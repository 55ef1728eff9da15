/**
 * Incarnations: which life of its data directory a node is in.
 *
 * A node draws a random 128-bit incarnation the first time it uses a data directory and keeps it
 * in `incarnation` (one line `incarnation <32 hex>`). A node whose directory was lost (disk
 * replaced, directory deleted) and that restarts with the same config comes back with the same id,
 * an empty log and no memory of its vote; it must not vote or count towards commits again under
 * that id. Its new directory gets a new incarnation, and its peers, which remember the incarnation
 * of every node they completed a handshake with (`peer_incarnations`, PeerIncarnations below),
 * refuse it (server/peer_handshake.ts).
 *
 * `peer_incarnations` is text: the line `kvstore-peer-incarnations v1`, then one line per peer,
 * `<id> <32 hex>`, ids ascending. Anything else in the file is a StorageCorruptError: a node that
 * cannot tell which peers it knew must not guess.
 *
 * Both files are written as every durable file here: a temporary file, fdatasync'd, renamed over
 * the name, the directory fsync'd.
 */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { assert } from '../util/assert';
import { KvError, LimitExceededError, StorageCorruptError } from '../util/errors';
import { LIMITS } from '../util/limits';
import { NODE_STORAGE_IO, type StorageIo } from './io';

export const INCARNATION_FILE_NAME = 'incarnation';
export const PEER_INCARNATIONS_FILE_NAME = 'peer_incarnations';
export const INCARNATION_BYTES = 16;
/** On the wire: "no incarnation known". A drawn incarnation is never all zeros. */
export const NO_INCARNATION = Buffer.alloc(INCARNATION_BYTES);

const INCARNATION_LINE = /^incarnation ([0-9a-f]{32})\n?$/;
const INCARNATION_FILE_BYTES_MAX = 64;
const PEERS_HEADER = 'kvstore-peer-incarnations v1';
const PEER_LINE = /^(\d{1,10}) ([0-9a-f]{32})$/;
/** A header line, then per peer: up to 10 digits, a space, 32 hex digits, a newline. */
const PEERS_FILE_BYTES_MAX = PEERS_HEADER.length + 1 + LIMITS.peer_incarnations_max * 44;

/** Hex for log lines. */
export function describeIncarnation(incarnation: Buffer): string {
  return incarnation.toString('hex');
}

/**
 * This data directory's incarnation: the one stored, or a new one drawn and stored (a new
 * directory, or one made by a version without incarnations). Call with the directory locked.
 */
export async function loadOrCreateIncarnation(
  io: StorageIo,
  data_dir: string,
  fsync: boolean,
): Promise<{ incarnation: Buffer; created: boolean }> {
  const file_path = path.join(data_dir, INCARNATION_FILE_NAME);
  if ((await io.listDirectory(data_dir)).includes(INCARNATION_FILE_NAME)) {
    const text = await readSmallFile(io, file_path, INCARNATION_FILE_BYTES_MAX);
    const match = INCARNATION_LINE.exec(text);
    if (match === null || match[1] === NO_INCARNATION.toString('hex'))
      throw new StorageCorruptError(
        `${file_path} is not an incarnation file: ${JSON.stringify(text.slice(0, 64))}`,
      );
    return { incarnation: Buffer.from(match[1] as string, 'hex'), created: false };
  }
  let incarnation = randomBytes(INCARNATION_BYTES);
  while (incarnation.equals(NO_INCARNATION)) incarnation = randomBytes(INCARNATION_BYTES);
  const line = `incarnation ${incarnation.toString('hex')}\n`;
  await writeDurably(io, data_dir, INCARNATION_FILE_NAME, Buffer.from(line, 'latin1'), fsync);
  return { incarnation, created: true };
}

/**
 * The node's incarnation (created if the directory has none) and its peers' (storage/io.ts's real
 * files; the test disk hooks are for the WAL). Call with the directory locked (RaftStorage open).
 */
export async function openIncarnations(
  dir: string,
  io: StorageIo = NODE_STORAGE_IO,
): Promise<{ incarnation: Buffer; created: boolean; peers: PeerIncarnations }> {
  const data_dir = path.resolve(dir);
  const { incarnation, created } = await loadOrCreateIncarnation(io, data_dir, true);
  const peers = await PeerIncarnations.open(io, data_dir, true);
  return { incarnation, created, peers };
}

/** The refusal of a handshake whose peer presents another incarnation than the one remembered. */
export class IncarnationMismatchError extends KvError {
  constructor(
    readonly peer_id: number,
    readonly remembered: Buffer,
    readonly presented: Buffer,
  ) {
    super(
      'INCARNATION_MISMATCH',
      `node ${peer_id} presents incarnation ${describeIncarnation(presented)}, ` +
        `remembered ${describeIncarnation(remembered)}`,
    );
  }
}

/**
 * The incarnation of every peer this node completed a handshake with, kept in
 * `data_dir/peer_incarnations`. The first sighting of a peer id is written (and durable) before
 * the transport accepts a Raft message on that link; a later handshake with another incarnation
 * for that id is refused. Entries of removed members stay (ids are not reused), within
 * LIMITS.peer_incarnations_max.
 */
export class PeerIncarnations {
  /** Durable entries, and entries whose write is in progress (recall sees both). */
  private readonly known = new Map<number, Buffer>();
  /** Entries not yet durable, with the write that makes them so. */
  private readonly writing = new Map<number, Promise<void>>();
  /** Writes of the file, one after another (each writes every entry known when it starts). */
  private write_chain: Promise<void> = Promise.resolve();

  private constructor(
    private readonly io: StorageIo,
    private readonly data_dir: string,
    private readonly fsync: boolean,
  ) {}

  /** Loads the file (none yet: nobody known). Call with the directory locked. */
  static async open(io: StorageIo, data_dir: string, fsync: boolean): Promise<PeerIncarnations> {
    const book = new PeerIncarnations(io, data_dir, fsync);
    if (!(await io.listDirectory(data_dir)).includes(PEER_INCARNATIONS_FILE_NAME)) return book;
    const file_path = path.join(data_dir, PEER_INCARNATIONS_FILE_NAME);
    const text = await readSmallFile(io, file_path, PEERS_FILE_BYTES_MAX + 1);
    for (const [id, incarnation] of parsePeerIncarnations(text, file_path))
      book.known.set(id, incarnation);
    return book;
  }

  /** Peers remembered (durable or being written). */
  get size(): number {
    return this.known.size;
  }

  /** The incarnation remembered for `peer_id`, durable or being written; null if none. */
  recall(peer_id: number): Buffer | null {
    return this.known.get(peer_id) ?? null;
  }

  /**
   * Records that `peer_id` is `incarnation`. 'durable' when it already was; else a promise that
   * resolves once it is on disk. Rejects with IncarnationMismatchError if another incarnation is
   * remembered (a concurrent first sighting with another value), LimitExceededError when
   * LIMITS.peer_incarnations_max peers are known already, or the write's error.
   */
  remember(peer_id: number, incarnation: Buffer): 'durable' | Promise<void> {
    assert(incarnation.length === INCARNATION_BYTES, 'an incarnation is 16 bytes');
    const known = this.known.get(peer_id);
    if (known !== undefined) {
      if (!known.equals(incarnation))
        return Promise.reject(new IncarnationMismatchError(peer_id, known, incarnation));
      return this.writing.get(peer_id) ?? 'durable';
    }
    if (this.known.size >= LIMITS.peer_incarnations_max) {
      return Promise.reject(
        new LimitExceededError(
          'peer_incarnations_max',
          `${PEER_INCARNATIONS_FILE_NAME}: already ${this.known.size} peers remembered ` +
            `(peer_incarnations_max); node ${peer_id} is not accepted`,
        ),
      );
    }
    this.known.set(peer_id, Buffer.from(incarnation));
    const written = this.write_chain.then(() => this.writeFile());
    this.write_chain = written.catch(() => undefined);
    const durable = written.then(
      () => {
        this.writing.delete(peer_id);
      },
      (error: unknown) => {
        // Not durable: forget it, so that the next handshake tries again.
        this.writing.delete(peer_id);
        this.known.delete(peer_id);
        throw error;
      },
    );
    this.writing.set(peer_id, durable);
    return durable;
  }

  private writeFile(): Promise<void> {
    const ids = [...this.known.keys()].sort((a, b) => a - b);
    const lines = [PEERS_HEADER];
    for (const id of ids) lines.push(`${id} ${(this.known.get(id) as Buffer).toString('hex')}`);
    const bytes = Buffer.from(`${lines.join('\n')}\n`, 'latin1');
    return writeDurably(this.io, this.data_dir, PEER_INCARNATIONS_FILE_NAME, bytes, this.fsync);
  }
}

/** The entries of a peer_incarnations file; StorageCorruptError for anything else. */
function parsePeerIncarnations(text: string, file_path: string): Map<number, Buffer> {
  const corrupt = (problem: string): StorageCorruptError =>
    new StorageCorruptError(
      `${file_path}: ${problem}; the node cannot tell which peer incarnations it has seen. ` +
        `Restore the file, or delete it to trust each peer's next handshake again (unsafe if ` +
        `a peer lost its data directory meanwhile)`,
    );
  if (text.length > PEERS_FILE_BYTES_MAX) throw corrupt(`more than ${PEERS_FILE_BYTES_MAX} bytes`);
  if (!text.endsWith('\n')) throw corrupt('no final newline (truncated?)');
  const lines = text.slice(0, -1).split('\n');
  if (lines[0] !== PEERS_HEADER) throw corrupt(`does not start with '${PEERS_HEADER}'`);
  const entries = new Map<number, Buffer>();
  for (let i = 1; i < lines.length; i++) {
    const match = PEER_LINE.exec(lines[i] as string);
    if (match === null) throw corrupt(`line ${i + 1} is not '<id> <32 hex digits>'`);
    const id = Number(match[1]);
    if (entries.has(id)) throw corrupt(`node ${id} appears twice`);
    const incarnation = Buffer.from(match[2] as string, 'hex');
    if (incarnation.equals(NO_INCARNATION)) throw corrupt(`node ${id} has a zero incarnation`);
    entries.set(id, incarnation);
  }
  if (entries.size > LIMITS.peer_incarnations_max)
    throw corrupt(`more than peer_incarnations_max (${LIMITS.peer_incarnations_max}) entries`);
  return entries;
}

async function readSmallFile(io: StorageIo, file_path: string, bytes_max: number): Promise<string> {
  const file = await io.openLog(file_path);
  try {
    const size = Math.min(await file.size(), bytes_max);
    const bytes = Buffer.alloc(size);
    const read = await file.read(bytes, 0, size, 0);
    return bytes.toString('latin1', 0, read);
  } finally {
    await file.close();
  }
}

async function writeDurably(
  io: StorageIo,
  dir: string,
  name: string,
  bytes: Buffer,
  fsync: boolean,
): Promise<void> {
  const file_path = path.join(dir, name);
  const temp_path = `${file_path}.tmp`;
  await io.unlink(temp_path);
  const file = await io.openLog(temp_path);
  try {
    await file.write(bytes, 0);
    if (fsync) await file.datasync();
  } finally {
    await file.close();
  }
  await io.rename(temp_path, file_path);
  if (fsync) await io.syncDirectory(dir);
}
