/**
 * The node's identity, stored in its data directory (`node_id`) the first time the directory is
 * used, and checked at every later start:
 *
 *   node_id <n>
 *   cluster <64 hex digits>
 *
 * `node_id`: a bootstrap node's id comes from the config files (sorted-address positions), so
 * editing the address list can renumber nodes; a data directory then holds another node's log and
 * vote, and running it under a new id could elect two leaders. A mismatch stops the node with a
 * message saying what to do. A node that joined a running cluster (`join`) got its id from the
 * leader; the file is then the only place that knows it.
 *
 * `cluster`: the cluster fingerprint the peer handshake compares, fixed when the cluster was
 * bootstrapped (as etcd's cluster id): computed from the bootstrap node's config at its first
 * start, given to a joining node by the cluster. It never follows later edits of the config files
 * or membership changes, so that nodes added or removed since do not split the cluster. A file
 * written before the line existed (one line) is read as `cluster` absent; the caller computes it
 * from the config then and writes it back (writeNodeIdentity).
 *
 * Written as every durable file here: a temporary file, fdatasync'd, renamed over the name, the
 * directory fsync'd.
 */
import * as path from 'node:path';
import { NodeIdentityError } from '../util/errors';
import type { StorageIo } from './io';

export const NODE_ID_FILE_NAME = 'node_id';
const FILE_PATTERN = /^node_id (\d{1,10})\n(?:cluster ([0-9a-f]{64})\n?)?$|^node_id (\d{1,10})$/;
/** The file is two short lines; anything longer is not ours. */
const FILE_BYTES_MAX = 128;
/** Bytes of the cluster fingerprint (SHA-256). */
const CLUSTER_FINGERPRINT_BYTES = 32;

export interface NodeIdentity {
  id: number;
  /** 32 bytes; null in a file written before the cluster line existed. */
  cluster_fingerprint: Buffer | null;
}

/** Creates the id file for `id`, or checks the one there; NodeIdentityError on a mismatch. */
export async function checkNodeIdentity(
  io: StorageIo,
  data_dir: string,
  id: number,
  fsync: boolean,
): Promise<'created' | 'matched'> {
  const stored = await readNodeIdentity(io, data_dir);
  if (stored !== null) {
    if (stored.id !== id)
      throw new NodeIdentityError(
        `${data_dir} holds the state of node ${stored.id}, but the config file makes this node ` +
          `${id} (did the follower_info list change?); restore the config, or give this node a ` +
          'new data directory and add it to the cluster as a new node (see README, Membership)',
      );
    return 'matched';
  }
  await writeNodeIdentity(io, data_dir, { id, cluster_fingerprint: null }, fsync);
  return 'created';
}

/** The stored identity, or null when the directory has none yet (a node's first start). */
export async function readNodeIdentity(
  io: StorageIo,
  data_dir: string,
): Promise<NodeIdentity | null> {
  if (!(await io.listDirectory(data_dir)).includes(NODE_ID_FILE_NAME)) return null;
  const file_path = path.join(data_dir, NODE_ID_FILE_NAME);
  const file = await io.openLog(file_path);
  let text: string;
  try {
    const size = Math.min(await file.size(), FILE_BYTES_MAX + 1);
    const bytes = Buffer.alloc(size);
    const read = await file.read(bytes, 0, size, 0);
    text = bytes.toString('latin1', 0, read);
  } finally {
    await file.close();
  }
  const match = text.length > FILE_BYTES_MAX ? null : FILE_PATTERN.exec(text);
  if (match === null)
    throw new NodeIdentityError(`${file_path} is not a node id file: ${JSON.stringify(text)}`);
  const id = Number(match[1] ?? match[3]);
  const hex = match[2];
  return { id, cluster_fingerprint: hex === undefined ? null : Buffer.from(hex, 'hex') };
}

/** Writes the identity durably (replacing the file atomically). */
export async function writeNodeIdentity(
  io: StorageIo,
  data_dir: string,
  identity: NodeIdentity,
  fsync: boolean,
): Promise<void> {
  const fingerprint = identity.cluster_fingerprint;
  if (fingerprint !== null && fingerprint.length !== CLUSTER_FINGERPRINT_BYTES)
    throw new NodeIdentityError(`cluster fingerprint of ${fingerprint.length} bytes, not 32`);
  const text =
    `node_id ${identity.id}\n` +
    (fingerprint === null ? '' : `cluster ${fingerprint.toString('hex')}\n`);
  const file_path = path.join(data_dir, NODE_ID_FILE_NAME);
  const temp_path = `${file_path}.tmp`;
  await io.unlink(temp_path);
  const file = await io.openLog(temp_path);
  try {
    await file.write(Buffer.from(text, 'latin1'), 0);
    if (fsync) await file.datasync();
  } finally {
    await file.close();
  }
  await io.rename(temp_path, file_path);
  if (fsync) await io.syncDirectory(data_dir);
}
