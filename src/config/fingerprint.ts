import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { ConfigError } from '../util/errors';
import { LIMITS } from '../util/limits';
import type { NodeAddress } from './config';

/** Bytes of a cluster fingerprint (SHA-256). */
export const FINGERPRINT_BYTES = 32;

/**
 * The member list as the nodes compare it: `id@host:raft_port` sorted by id, comma-separated.
 * Ids come from each node's own file, so two files that list different members give different
 * lists even where they agree on an address.
 */
export function describeMembers(nodes: readonly NodeAddress[]): string {
  return [...nodes]
    .sort((a, b) => a.id - b.id)
    .map((node) => `${node.id}@${node.host}:${node.raft_port}`)
    .join(',');
}

/**
 * SHA-256 over a version tag, the cluster name and the member list. Nodes whose files disagree
 * about the cluster (a missing or extra member, another port, another name) get different
 * fingerprints and refuse each other's Raft links instead of electing two leaders.
 */
export function clusterFingerprint(nodes: readonly NodeAddress[], cluster_name: string): Buffer {
  return createHash('sha256')
    .update('kvstore-cluster-v1\n')
    .update(`${cluster_name}\n`)
    .update(describeMembers(nodes))
    .digest();
}

/**
 * Reads the shared peer secret: the file's bytes with trailing whitespace (a final newline) cut.
 * Refuses an empty or oversized file rather than run with a secret nobody meant.
 */
export function loadClusterSecret(file_path: string): Buffer {
  let text: Buffer;
  try {
    const size = fs.statSync(file_path).size;
    if (size > LIMITS.cluster_secret_bytes_max) {
      throw new ConfigError(
        file_path,
        null,
        `cluster secret file is larger than ${LIMITS.cluster_secret_bytes_max} bytes`,
      );
    }
    text = fs.readFileSync(file_path);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(file_path, null, `cannot read cluster secret: ${reason}`);
  }
  let end = text.length;
  while (end > 0 && (text[end - 1] === 0x0a || text[end - 1] === 0x0d || text[end - 1] === 0x20))
    end--;
  if (end < LIMITS.cluster_secret_bytes_min) {
    throw new ConfigError(
      file_path,
      null,
      `cluster secret must be at least ${LIMITS.cluster_secret_bytes_min} bytes`,
    );
  }
  return Buffer.from(text.subarray(0, end));
}
