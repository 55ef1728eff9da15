/**
 * Admin commands for the membership (issue 15), on the client port:
 * - `RAFT.NODES`: one line per member and per node the leader still replicates to:
 *   `id=3 address=127.0.0.1:8003 member=voter|learner|leaving role=leader|follower
 *   match=120 lag=0` (match and lag as the leader knows them; on a follower `match=? lag=?`).
 * - `RAFT.NODE REMOVE id`: on the leader, proposes the removal and replies `+OK` once it has
 *   committed. A leader that removes itself hands leadership over after that (see core.ts).
 * - `RAFT.NODE ADD host:port` (a node's client address; its Raft port is 1000 below): on the
 *   leader, gives the node a new id (membership.ts allocateId: never one used before) and adds it
 *   as a learner; replies `+OK id=<n> cluster=<64 hex>` (join_client.ts) once that committed. The
 *   leader promotes it to voter once it is caught up (core.ts). An address that is already a
 *   learner which has received nothing yet gets the same answer for its id (a joiner that died
 *   before storing its id retries); one that belongs to a voter, or to a learner that has
 *   received entries, is refused: if that node lost its data directory, it must be removed first
 *   and join as a new node (a node that forgot its log must never count as the old one).
 * Errors: `-TRYAGAIN` for what a retry may fix (not the leader, a change in progress, a new leader
 * that has not committed an entry of its term), `-ERR` for a bad request.
 */
import type { RaftCore } from '../raft/core';
import { RAFT_PORT_OFFSET } from '../config/config';
import { allocateId, memberOf, type MembershipChange } from '../raft/membership';
import { NO_NODE, type NodeId } from '../raft/types';
import type { Replica } from '../replica/replica';
import { encodeBulkString, encodeError, encodeSimpleString, REPLY_OK } from '../resp/reply';
import { formatHostPort, parseHostPort } from '../util/address';
import type { ClientReply } from './client_listener';
import { formatAddReply, type JoinGrant } from './join_client';

export const RAFT_NODES = 'RAFT.NODES';
export const RAFT_NODE = 'RAFT.NODE';

export interface MembershipCommandHost {
  core: RaftCore;
  replica: Replica;
  /** The client address of a node this one knows (config file or membership), or null. */
  addressOf(id: NodeId): string | null;
  /** Runs the driver soon (a proposal waits for the next Ready). */
  schedule(): void;
  /** The cluster's fingerprint (node_identity.ts), which a joining node must use. */
  cluster_fingerprint: Buffer;
}

/** RAFT.NODES: the membership as this node sees it, one member per line. */
export function nodesCommand(host: MembershipCommandHost): ClientReply {
  const { core } = host;
  const status = core.status();
  const membership = core.current_membership;
  const leader = status.role === 'leader';
  const ids = new Set<NodeId>(membership.members.map((m) => m.id));
  for (const peer of status.peers) ids.add(peer.id);
  const lines: string[] = [];
  for (const id of [...ids].sort((a, b) => a - b)) {
    const member = memberOf(membership, id);
    const kind = member === undefined ? 'leaving' : member.voter ? 'voter' : 'learner';
    const address = member?.address || host.addressOf(id) || '?';
    const role = id === status.leader_id ? 'leader' : id === core.id ? status.role : 'follower';
    const peer = status.peers.find((p) => p.id === id);
    const match = id === core.id ? status.last_log_index : peer?.match;
    const progress =
      leader && match !== undefined
        ? `match=${match} lag=${status.last_log_index - match}`
        : 'match=? lag=?';
    lines.push(`id=${id} address=${address} member=${kind} role=${role} ${progress}`);
  }
  return { reply: encodeBulkString(`${lines.join('\n')}\n`) };
}

/** RAFT.NODE ADD|REMOVE …; the reply settles once a change has committed. */
export function nodeCommand(
  args: Buffer[],
  host: MembershipCommandHost,
): ClientReply | Promise<ClientReply> {
  const verb = args[1]?.toString('latin1').toUpperCase();
  if ((verb !== 'REMOVE' && verb !== 'ADD') || args.length !== 3)
    return { reply: encodeError('ERR usage: RAFT.NODE ADD host:port | RAFT.NODE REMOVE id') };
  if (verb === 'ADD') return addCommand(args[2]?.toString('utf8') ?? '', host);
  const id = Number(args[2]?.toString('latin1'));
  if (!Number.isInteger(id) || id <= NO_NODE)
    return { reply: encodeError('ERR RAFT.NODE REMOVE needs a node id (RAFT.NODES lists them)') };
  return propose({ kind: 'remove', id }, host, REPLY_OK);
}

/** RAFT.NODE ADD host:port (see the top of this file). */
function addCommand(text: string, host: MembershipCommandHost): ClientReply | Promise<ClientReply> {
  const parsed = parseHostPort(text);
  if (!parsed.ok) return { reply: encodeError(`ERR RAFT.NODE ADD: ${parsed.problem}`) };
  if (parsed.address.port <= RAFT_PORT_OFFSET)
    return { reply: encodeError(`ERR RAFT.NODE ADD: client port must exceed ${RAFT_PORT_OFFSET}`) };
  const address = formatHostPort(parsed.address);
  const { core } = host;
  const membership = core.current_membership;
  const existing = membership.members.find((m) => m.address === address);
  if (existing === undefined || core.current_role !== 'leader') {
    const id = allocateId(membership);
    const granted = reply({ id, cluster_fingerprint: host.cluster_fingerprint });
    return propose({ kind: 'add_learner', id, address }, host, granted);
  }
  const id = existing.id;
  const status = core.status();
  const match = status.peers.find((p) => p.id === id)?.match ?? 0;
  if (existing.voter || match > 0) {
    const what = existing.voter ? 'a voter' : `a learner holding entries up to ${match}`;
    return {
      reply: encodeError(
        `ERR ${address} is node ${id}, ${what}; if that node lost its data directory, ` +
          `RAFT.NODE REMOVE ${id} first, then start it again with join (it gets a new id)`,
      ),
    };
  }
  if (core.membership_index > status.commit_index)
    return { reply: encodeError(`TRYAGAIN the change adding node ${id} has not committed yet`) };
  return { reply: reply({ id, cluster_fingerprint: host.cluster_fingerprint }) };
}

function reply(grant: JoinGrant): Buffer {
  return encodeSimpleString(formatAddReply(grant));
}

function propose(
  change: MembershipChange,
  host: MembershipCommandHost,
  on_commit: Buffer,
): Promise<ClientReply> {
  return new Promise((resolve) => {
    const refused = host.replica.changeMembership(change, (outcome) => {
      if (outcome.ok) resolve({ reply: on_commit });
      else resolve({ reply: encodeError('TRYAGAIN the change lost its log slot; retry') });
    });
    host.schedule();
    if (refused === null) return;
    if (refused.reason === 'invalid_change') {
      resolve({ reply: encodeError(`ERR ${refused.detail}`) });
      return;
    }
    const leader = refused.leader_id === NO_NODE ? null : host.addressOf(refused.leader_id);
    const where = refused.reason === 'not_leader' && leader !== null ? ` (leader ${leader})` : '';
    resolve({ reply: encodeError(`TRYAGAIN ${refused.detail}${where}`) });
  });
}
