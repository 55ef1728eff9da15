/**
 * Cluster membership as the Raft thesis §4.1 prescribes it: single-server changes, each a log
 * entry that takes effect on every node as soon as it is in that node's log (committed or not),
 * and that is undone when the entry is truncated away.
 *
 * Why single-server changes (not joint consensus, §4.3): when the voter sets of two consecutive
 * configurations differ by at most one server, every majority of the old set and every majority
 * of the new set share a server, so the two can never elect two leaders or commit two different
 * entries at one index. That holds only if (a) a leader proposes a change only once the previous
 * one has committed (one change at a time) and (b) only once it has committed an entry of its own
 * term (the errata to the thesis, raft-dev 2015: otherwise a change proposed by a deposed leader
 * and one of its successor can both be in play). The core enforces both.
 *
 * Learners (etcd's name) are members that receive the log but never vote, campaign or count
 * towards a quorum: a new server joins as a learner, catches up, then is promoted to voter by a
 * change of its own, so adding a server never blocks commits while it catches up.
 *
 * ## Entry layout
 * A membership entry's data starts with MEMBERSHIP_ENTRY_OPCODE, which no KV command uses (see
 * kv/command_codec.ts, which treats it as a no-op for the state machine). Integers are unsigned
 * 32-bit little-endian:
 *   `[0x80][version u8 = 2][next_id u32][member_count u32]` then per member, ascending by id:
 *   `[id u32][voter u8 0|1][address_length u32][address bytes, UTF-8 host:port of the client port]`
 * Version 1 (still read) lacks `next_id`; it is then taken as the highest member id + 1.
 * The whole configuration is stored (not the change), so a node that sees only the latest entry
 * (or a snapshot, which stores the same encoding) knows the full membership. At least one voter;
 * ids are positive int32. `next_id` is the high-water mark of ids ever given out: the leader
 * gives a new node `next_id` and the entry that adds it raises the mark, so an id is never reused,
 * even after its node was removed (a node that lost its data must never pass for the old one).
 */
import { assert } from '../util/assert';
import { CommandMalformedError } from '../util/errors';
import { LIMITS } from '../util/limits';
import { NO_NODE, type NodeId } from './types';

export const MEMBERSHIP_ENTRY_OPCODE = 0x80;
const MEMBERSHIP_VERSION = 2;
const MEMBERSHIP_VERSION_WITHOUT_NEXT_ID = 1;
const INT32_MAX = 0x7fff_ffff;

export interface Member {
  id: NodeId;
  /** false: a learner (replicated to, never counted). */
  voter: boolean;
  /** The member's client address (host:port); empty when the bootstrap config did not say. */
  address: string;
}

/** One configuration: its members ascending by id. Never mutated once built. */
export interface Membership {
  readonly members: readonly Member[];
  /** The id the next added node gets: above every id this cluster ever gave out. */
  readonly next_id: NodeId;
}

export type MembershipChange =
  | { kind: 'add_learner'; id: NodeId; address: string }
  | { kind: 'promote'; id: NodeId }
  | { kind: 'remove'; id: NodeId };

/** The configuration the seed's config files describe: every listed node a voter. */
export function bootstrapMembership(
  voters: readonly NodeId[],
  addresses: ReadonlyMap<NodeId, string> = new Map(),
): Membership {
  const members = voters.map((id) => ({ id, voter: true, address: addresses.get(id) ?? '' }));
  return { members: members.sort((a, b) => a.id - b.id), next_id: idAfter(members) };
}

/** One more than the highest member id (1 for none). */
function idAfter(members: readonly Member[]): NodeId {
  return members.reduce((high, m) => Math.max(high, m.id), 0) + 1;
}

/**
 * The id a node added now gets (the leader's choice for RAFT.NODE ADD). Never one a member holds
 * or held: the high-water mark only grows.
 */
export function allocateId(membership: Membership): NodeId {
  const id = Math.max(membership.next_id, idAfter(membership.members));
  assert(isValidId(id), `node ids exhausted (${id})`);
  return id;
}

export function votersOf(membership: Membership): NodeId[] {
  return membership.members.filter((m) => m.voter).map((m) => m.id);
}

export function learnersOf(membership: Membership): NodeId[] {
  return membership.members.filter((m) => !m.voter).map((m) => m.id);
}

export function memberOf(membership: Membership, id: NodeId): Member | undefined {
  return membership.members.find((m) => m.id === id);
}

export function isVoter(membership: Membership, id: NodeId): boolean {
  return memberOf(membership, id)?.voter === true;
}

/** Votes (or acknowledgements) needed: a majority of the voters. */
export function quorumOf(membership: Membership): number {
  return Math.floor(votersOf(membership).length / 2) + 1;
}

/** Whether the voters for which `counts` holds form a majority of the voters. */
export function hasQuorum(membership: Membership, counts: (id: NodeId) => boolean): boolean {
  let yes = 0;
  for (const member of membership.members) if (member.voter && counts(member.id)) yes++;
  return yes >= quorumOf(membership);
}

/**
 * The highest index a majority of the voters hold, given each voter's match index: the quorum-th
 * highest match (0 when there are no voters).
 */
export function quorumMatch(membership: Membership, matchOf: (id: NodeId) => number): number {
  // One small array and no Array#sort: the leader runs this for every append response and save,
  // and the chained filter/map/map/sort was a visible share of its garbage per SET.
  const matches: number[] = [];
  for (const member of membership.members) if (member.voter) matches.push(matchOf(member.id));
  sortDescending(matches);
  return matches[Math.floor(matches.length / 2)] ?? 0;
}

/** Sorts a short array of numbers in place, largest first (insertion sort: no allocation). */
export function sortDescending(values: number[]): void {
  for (let i = 1; i < values.length; i++) {
    const value = values[i] as number;
    let at = i - 1;
    while (at >= 0 && (values[at] as number) < value) {
      values[at + 1] = values[at] as number;
      at--;
    }
    values[at + 1] = value;
  }
}

/**
 * How many servers' votes differ between the two configurations: single-server changes keep it
 * at most 1 (learners never count).
 */
export function voterDifference(a: Membership, b: Membership): number {
  const va = new Set(votersOf(a));
  const vb = new Set(votersOf(b));
  let differ = 0;
  for (const id of va) if (!vb.has(id)) differ++;
  for (const id of vb) if (!va.has(id)) differ++;
  return differ;
}

/** The configuration after `change`, or why the change is not allowed. */
export function applyChange(
  current: Membership,
  change: MembershipChange,
): { ok: true; membership: Membership } | { ok: false; reason: string } {
  const existing = memberOf(current, change.id);
  let members: Member[];
  let next_id = current.next_id;
  if (change.kind === 'add_learner') {
    if (!isValidId(change.id)) return { ok: false, reason: `${change.id} is not a node id` };
    if (existing !== undefined) return { ok: false, reason: `node ${change.id} is a member` };
    if (current.members.length >= LIMITS.cluster_nodes_max)
      return { ok: false, reason: `the cluster has ${LIMITS.cluster_nodes_max} members` };
    const bytes = Buffer.byteLength(change.address, 'utf8');
    if (bytes > LIMITS.membership_address_bytes_max)
      return { ok: false, reason: `address longer than ${LIMITS.membership_address_bytes_max} B` };
    const added = { id: change.id, voter: false, address: change.address };
    members = [...current.members, added].sort((a, b) => a.id - b.id);
    next_id = Math.max(next_id, change.id + 1);
  } else if (change.kind === 'promote') {
    if (existing === undefined) return { ok: false, reason: `node ${change.id} is not a member` };
    if (existing.voter) return { ok: false, reason: `node ${change.id} is already a voter` };
    members = current.members.map((m) => (m.id === change.id ? { ...m, voter: true } : m));
  } else {
    if (existing === undefined) return { ok: false, reason: `node ${change.id} is not a member` };
    if (existing.voter && votersOf(current).length === 1)
      return { ok: false, reason: `node ${change.id} is the last voter` };
    members = current.members.filter((m) => m.id !== change.id);
  }
  const membership = { members, next_id };
  assert(voterDifference(current, membership) <= 1, 'a change moves at most one vote');
  return { ok: true, membership };
}

function isValidId(id: number): boolean {
  return Number.isInteger(id) && id > NO_NODE && id <= INT32_MAX;
}

// ---------------------------------------------------------------- entry codec

export function isMembershipEntry(data: Uint8Array): boolean {
  return data.length > 0 && data[0] === MEMBERSHIP_ENTRY_OPCODE;
}

export function encodeMembership(membership: Membership): Uint8Array {
  const addresses = membership.members.map((m) => Buffer.from(m.address, 'utf8'));
  let bytes = 2 + 4 + 4;
  for (const address of addresses) bytes += 4 + 1 + 4 + address.length;
  const out = Buffer.alloc(bytes);
  out[0] = MEMBERSHIP_ENTRY_OPCODE;
  out[1] = MEMBERSHIP_VERSION;
  let offset = out.writeUInt32LE(membership.next_id, 2);
  offset = out.writeUInt32LE(membership.members.length, offset);
  for (const [i, member] of membership.members.entries()) {
    const address = addresses[i]!;
    offset = out.writeUInt32LE(member.id, offset);
    offset = out.writeUInt8(member.voter ? 1 : 0, offset);
    offset = out.writeUInt32LE(address.length, offset);
    offset += address.copy(out, offset);
  }
  assert(offset === bytes, 'membership encoding size');
  return out;
}

/** Strict: anything but a well-formed configuration is a CommandMalformedError. */
export function decodeMembership(data: Uint8Array): Membership {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const fail = (why: string): never => {
    throw new CommandMalformedError(`membership entry: ${why}`);
  };
  if (bytes.length < 6 || bytes[0] !== MEMBERSHIP_ENTRY_OPCODE) fail('too short');
  const version = bytes[1];
  if (version !== MEMBERSHIP_VERSION && version !== MEMBERSHIP_VERSION_WITHOUT_NEXT_ID)
    fail(`unknown version ${version}`);
  let offset = 2;
  let stored_next_id = 0;
  if (version === MEMBERSHIP_VERSION) {
    if (bytes.length < 10) fail('too short');
    stored_next_id = bytes.readUInt32LE(offset);
    offset += 4;
  }
  const count = bytes.readUInt32LE(offset);
  offset += 4;
  if (count > LIMITS.cluster_nodes_max) fail(`${count} members`);
  const members: Member[] = [];
  for (let i = 0; i < count; i++) {
    if (offset + 9 > bytes.length) fail('truncated member');
    const id = bytes.readUInt32LE(offset);
    const voter = bytes[offset + 4];
    const length = bytes.readUInt32LE(offset + 5);
    offset += 9;
    if (!isValidId(id)) fail(`bad id ${id}`);
    if (voter !== 0 && voter !== 1) fail(`bad voter flag ${voter}`);
    if (length > LIMITS.membership_address_bytes_max || offset + length > bytes.length)
      fail(`bad address length ${length}`);
    const previous = members[members.length - 1];
    if (previous !== undefined && previous.id >= id) fail('ids not ascending');
    members.push({
      id,
      voter: voter === 1,
      address: bytes.toString('utf8', offset, offset + length),
    });
    offset += length;
  }
  if (offset !== bytes.length) fail(`${bytes.length - offset} trailing bytes`);
  const floor = idAfter(members);
  if (version === MEMBERSHIP_VERSION && (stored_next_id < floor || stored_next_id > INT32_MAX + 1))
    fail(`next_id ${stored_next_id} not above the member ids`);
  const membership = { members, next_id: version === MEMBERSHIP_VERSION ? stored_next_id : floor };
  if (votersOf(membership).length === 0) fail('no voter');
  return membership;
}

// ---------------------------------------------------------------- the configurations in a log

/**
 * The configurations a node's log holds: the one in effect at `base_index` (from a snapshot, or
 * the bootstrap configuration) and every membership entry after it. The node uses the latest
 * (thesis §4.1), committed or not; truncating the log rolls back to the one before.
 */
export class MembershipLog {
  private base_index: number;
  private base: Membership;
  /** Membership entries after base_index, ascending by index. */
  private entries: Array<{ index: number; membership: Membership }> = [];

  constructor(base_index: number, base: Membership) {
    this.base_index = base_index;
    this.base = base;
  }

  /** The configuration in effect: the latest in the log. */
  get current(): Membership {
    return this.entries[this.entries.length - 1]?.membership ?? this.base;
  }

  /** Index of the entry that set the current configuration (the base index if none did). */
  get current_index(): number {
    return this.entries[this.entries.length - 1]?.index ?? this.base_index;
  }

  /** The configuration in effect once the log up to `index` is applied. */
  at(index: number): Membership {
    assert(index >= this.base_index, `membership at ${index} below base ${this.base_index}`);
    let found = this.base;
    for (const entry of this.entries) {
      if (entry.index > index) break;
      found = entry.membership;
    }
    return found;
  }

  /** An entry was appended at `index`; returns whether it changed the configuration. */
  onAppend(index: number, data: Uint8Array): boolean {
    if (index <= this.base_index || !isMembershipEntry(data)) return false;
    assert(index > this.current_index, `membership entry ${index} after ${this.current_index}`);
    this.entries.push({ index, membership: decodeMembership(data) });
    return true;
  }

  /** The log lost every entry at index >= from; returns whether the configuration rolled back. */
  onTruncate(from: number): boolean {
    assert(from > this.base_index, `truncation at ${from} at or below base ${this.base_index}`);
    const before = this.entries.length;
    this.entries = this.entries.filter((entry) => entry.index < from);
    return this.entries.length !== before;
  }

  /** The log before `index` is gone (a snapshot covers it): fold the entries up to it. */
  compact(index: number): void {
    if (index <= this.base_index) return;
    this.base = this.at(index);
    this.base_index = index;
    this.entries = this.entries.filter((entry) => entry.index > index);
  }

  /**
   * The log now starts after a snapshot at `index` that records `membership` (InstallSnapshot);
   * `kept_suffix`: the log kept its entries after `index` (they matched), and so their
   * configurations. A snapshot that records none (an old file) holds the one our log had there,
   * or, if our log does not reach back that far, the one we use now.
   */
  restoreSnapshot(index: number, membership: Membership | undefined, kept_suffix: boolean): void {
    const known = index >= this.base_index ? this.at(index) : this.current;
    this.base = membership ?? known;
    this.entries = kept_suffix ? this.entries.filter((entry) => entry.index > index) : [];
    this.base_index = index;
  }
}
