/**
 * Admin commands for the membership (issue 15), on the client port:
 * - `RAFT.NODES`: one line per member and per node the leader still replicates to:
 *   `id=3 address=127.0.0.1:8003 member=voter|learner|leaving role=leader|follower
 *   match=120 lag=0` (match and lag as the leader knows them; on a follower `match=? lag=?`).
 * - `RAFT.NODE REMOVE id`: on the leader, proposes the removal and replies `+OK` once it has
 *   committed. A leader that removes itself hands leadership over after that (see core.ts).
 * - `RAFT.NODE ADD host:port`: not available yet (the peer transport does not yet learn new
 *   addresses); it answers an error saying so.
 * Errors: `-TRYAGAIN` for what a retry may fix (not the leader, a change in progress, a new leader
 * that has not committed an entry of its term), `-ERR` for a bad request.
 */
import type { RaftCore } from '../raft/core';
import { memberOf, type MembershipChange } from '../raft/membership';
import { NO_NODE, type NodeId } from '../raft/types';
import type { Replica } from '../replica/replica';
import { encodeBulkString, encodeError, REPLY_OK } from '../resp/reply';
import type { ClientReply } from './client_listener';

export const RAFT_NODES = 'RAFT.NODES';
export const RAFT_NODE = 'RAFT.NODE';

export interface MembershipCommandHost {
  core: RaftCore;
  replica: Replica;
  /** The client address of a node this one knows (config file or membership), or null. */
  addressOf(id: NodeId): string | null;
  /** Runs the driver soon (a proposal waits for the next Ready). */
  schedule(): void;
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
  if (verb === 'ADD')
    return {
      reply: encodeError(
        'ERR RAFT.NODE ADD is not available yet: the peer transport cannot reach new addresses',
      ),
    };
  if (verb !== 'REMOVE' || args.length !== 3)
    return { reply: encodeError('ERR usage: RAFT.NODE REMOVE id') };
  const id = Number(args[2]?.toString('latin1'));
  if (!Number.isInteger(id) || id <= NO_NODE)
    return { reply: encodeError('ERR RAFT.NODE REMOVE needs a node id (RAFT.NODES lists them)') };
  return propose({ kind: 'remove', id }, host);
}

function propose(change: MembershipChange, host: MembershipCommandHost): Promise<ClientReply> {
  return new Promise((resolve) => {
    const refused = host.replica.changeMembership(change, (outcome) => {
      if (outcome.ok) resolve({ reply: REPLY_OK });
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
