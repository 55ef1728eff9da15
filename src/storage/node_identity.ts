/**
 * The node's id, stored in its data directory (`node_id`, one line `node_id <n>`) the first time
 * the directory is used, and checked at every later start. Ids come from the config files
 * (sorted-address positions), so editing the address list can renumber nodes; a data directory
 * then holds another node's log and vote, and running it under a new id could elect two leaders.
 * A mismatch stops the node with a message saying what to do.
 *
 * Written as every durable file here: a temporary file, fdatasync'd, renamed over the name, the
 * directory fsync'd.
 */
import * as path from 'node:path';
import { NodeIdentityError } from '../util/errors';
import type { StorageIo } from './io';

export const NODE_ID_FILE_NAME = 'node_id';
const LINE_PATTERN = /^node_id (\d{1,10})\n?$/;
/** The file is one short line; anything longer is not ours. */
const FILE_BYTES_MAX = 64;

/** Creates the id file for `id`, or checks the one there; NodeIdentityError on a mismatch. */
export async function checkNodeIdentity(
  io: StorageIo,
  data_dir: string,
  id: number,
  fsync: boolean,
): Promise<'created' | 'matched'> {
  const file_path = path.join(data_dir, NODE_ID_FILE_NAME);
  if ((await io.listDirectory(data_dir)).includes(NODE_ID_FILE_NAME)) {
    const stored = await readStoredId(io, file_path);
    if (stored !== id)
      throw new NodeIdentityError(
        `${data_dir} holds the state of node ${stored}, but the config file makes this node ` +
          `${id} (did the follower_info list change?); restore the config, or give this node a ` +
          'new data directory and add it to the cluster as a new node',
      );
    return 'matched';
  }
  const temp_path = `${file_path}.tmp`;
  await io.unlink(temp_path);
  const file = await io.openLog(temp_path);
  try {
    await file.write(Buffer.from(`node_id ${id}\n`, 'latin1'), 0);
    if (fsync) await file.datasync();
  } finally {
    await file.close();
  }
  await io.rename(temp_path, file_path);
  if (fsync) await io.syncDirectory(data_dir);
  return 'created';
}

async function readStoredId(io: StorageIo, file_path: string): Promise<number> {
  const file = await io.openLog(file_path);
  let text: string;
  try {
    const size = Math.min(await file.size(), FILE_BYTES_MAX);
    const bytes = Buffer.alloc(size);
    const read = await file.read(bytes, 0, size, 0);
    text = bytes.toString('latin1', 0, read);
  } finally {
    await file.close();
  }
  const match = LINE_PATTERN.exec(text);
  if (match === null)
    throw new NodeIdentityError(`${file_path} is not a node id file: ${JSON.stringify(text)}`);
  return Number(match[1]);
}
