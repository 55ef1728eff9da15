/**
 * The first bytes of every Raft peer connection, before any Raft frame: the
 * cluster fingerprint exchange and, with a cluster secret, mutual
 * authentication. Frames use the Raft frame header `[type u32][payload_size u32]`
 * with type numbers after the Raft messages (1..8); integers little-endian.
 *
 *   Hello          9  [node_id i32][fingerprint 32][incarnation 16][peer_incarnation 16]
 *                    [members_len u32][members]
 *   AuthChallenge 10  [node_id i32][fingerprint 32][incarnation 16][peer_incarnation 16]
 *                    [nonce 32][members_len u32][members]
 *   AuthResponse  11  [node_id i32][fingerprint 32][incarnation 16][peer_incarnation 16]
 *                    [nonce 32][mac 32][members_len u32][members]
 *   AuthConfirm   12  [mac 32]
 *
 * `members` is the sender's member list as text (describeMembers), only for the
 * log line of a mismatch; the fingerprint is what is compared.
 *
 * Incarnations (storage/incarnation.ts): `incarnation` is the sender's data
 * directory's; `peer_incarnation` the one the sender remembers for the receiver
 * (zeros: none yet). Each side refuses a peer whose incarnation differs from the
 * one it remembers for that id (the peer lost its data directory: its log and
 * its vote), and refuses to go on when the peer remembers it as another
 * incarnation (this node lost its own); either way both sides log why, as for a
 * fingerprint mismatch. A first sighting is recorded by the transport before it
 * reads a Raft frame. A bare-frame peer (no Hello) is not checked. With a secret
 * the checks wait for the peer's MAC, which covers both sides' incarnation fields.
 *
 * Open mode (no secret): the dialer sends Hello (unless `send_hello` is false:
 * config `peer_hello off`) and starts sending Raft frames at once. The acceptor
 * looks at the first frame: a Hello is checked and answered with its own Hello;
 * anything else is a bare-frame (seed format) peer and goes straight to the Raft
 * decoder. The dialer likewise accepts a Hello as
 * the first frame it receives, or none. A Hello is a claim, not a proof.
 *
 * Secret mode: dialer D sends AuthChallenge with nonce_d; acceptor A checks
 * D's id and fingerprint and answers AuthResponse with nonce_a and
 * mac_a = HMAC-SHA256(secret, "kvstore-peer-auth-v2" | "A" | fingerprint |
 * d_id i32 | a_id i32 | nonce_d | nonce_a | d_incarnation | d_peer_incarnation |
 * a_incarnation | a_peer_incarnation); D checks A's id, fingerprint and mac_a,
 * then sends AuthConfirm with mac_d, the same HMAC with "D" for "A", then checks
 * the incarnations. A checks mac_d, then the incarnations. Only then does
 * either side read a Raft frame; each side has proven to the other that it
 * holds the secret, for this connection's fresh nonces (no replay), in its
 * role (no reflection), and the ids it claimed are fixed for the connection.
 * MACs are compared in constant time.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { describeIncarnation, INCARNATION_BYTES, NO_INCARNATION } from '../storage/incarnation';
import { assert } from '../util/assert';
import { LIMITS } from '../util/limits';

export const HandshakeType = {
  Hello: 9,
  AuthChallenge: 10,
  AuthResponse: 11,
  AuthConfirm: 12,
} as const;

const HEADER_BYTES = 8;
const ID_BYTES = 4;
const DIGEST_BYTES = 32;
const NONCE_BYTES = 32;
const MAC_LABEL = Buffer.from('kvstore-peer-auth-v2', 'latin1');

/** What a node remembers of its peers' incarnations (storage/incarnation.ts PeerIncarnations). */
export interface PeerIncarnationMemory {
  /** The incarnation remembered for `peer_id` (durable or being written), or null. */
  recall(peer_id: number): Buffer | null;
  /** Records a sighting: 'durable' if it already was, else resolves once it is on disk. */
  remember(peer_id: number, incarnation: Buffer): 'durable' | Promise<void>;
}

export interface IncarnationSettings {
  /** This node's data directory incarnation (INCARNATION_BYTES, never all zeros). */
  own: Buffer;
  memory: PeerIncarnationMemory;
  /** false: TESTS ONLY (`test_faults skip_incarnation_check`): sent, remembered, not compared. */
  check: boolean;
}

export interface HandshakeSettings {
  self_id: number;
  /** 32 bytes, clusterFingerprint of this node's config. */
  fingerprint: Buffer;
  /** describeMembers of this node's config. */
  members: string;
  /** null: open mode. */
  secret: Buffer | null;
  /** Ids that may connect to us (every configured node but this one). */
  peer_ids: ReadonlySet<number>;
  /**
   * Open mode: whether a dialer opens with Hello (default true). false speaks bare seed frames
   * only, for peers that would not skip an unknown first frame; Hellos received are still
   * answered (only our own nodes send them).
   */
  send_hello?: boolean;
  /** Absent (tests of other parts): zeros are sent, and nothing is compared or remembered. */
  incarnation?: IncarnationSettings;
}

export type HandshakeResult =
  | { kind: 'pending' }
  /**
   * `peer_id`: who the peer is (authenticated with a secret, claimed in open mode) or null for a
   * bare-frame peer. `rest`: bytes after the handshake, for the Raft decoder. `peer_incarnation`:
   * the incarnation the peer presented, for the transport to remember before reading `rest`;
   * null for a bare-frame peer or without IncarnationSettings.
   */
  | { kind: 'done'; peer_id: number | null; rest: Buffer; peer_incarnation: Buffer | null }
  /**
   * `mismatch`: the configs or the incarnations disagree (worth one loud log line rather than a
   * debug one).
   */
  | { kind: 'failed'; reason: string; mismatch: boolean };

interface Frame {
  type: number;
  payload: Buffer;
}

class HandshakeFailure extends Error {
  constructor(
    message: string,
    readonly mismatch = false,
  ) {
    super(message);
  }
}

/**
 * One connection's handshake, as a push state machine: feed received bytes to push(), write
 * whatever `outgoing` holds after each call. Never buffers more than peer_handshake_bytes_max.
 */
export class PeerHandshake {
  private readonly settings: HandshakeSettings;
  private readonly role: 'dialer' | 'acceptor';
  /** Dialer: the node we dialled. Acceptor: the id the peer claimed, once known. */
  private peer_id: number | null;
  private readonly own_nonce = randomBytes(NONCE_BYTES);
  /** The peer's Hello / AuthChallenge / AuthResponse, once received. */
  private peer_identity: Identity | null = null;
  /** Our incarnation and the one we remember for the peer, as sent (the MAC covers them). */
  private sent_incarnations: Buffer = Buffer.alloc(2 * INCARNATION_BYTES);
  private buffered: Buffer = Buffer.alloc(0);
  private state: 'first_frame' | 'auth_response' | 'auth_confirm' | 'over' = 'first_frame';
  /** Frames to send, taken by the caller. */
  outgoing: Buffer[] = [];

  constructor(settings: HandshakeSettings, role: 'dialer' | 'acceptor', peer_id: number | null) {
    assert(settings.fingerprint.length === DIGEST_BYTES, 'fingerprint is 32 bytes');
    assert(role === 'acceptor' || peer_id !== null, 'a dialer knows whom it dialled');
    this.settings = settings;
    this.role = role;
    this.peer_id = peer_id;
    if (role === 'dialer') {
      this.sent_incarnations = this.incarnationFields(peer_id as number);
      this.state = settings.secret === null ? 'first_frame' : 'auth_response';
      if (settings.secret !== null)
        this.outgoing.push(this.identityFrame(HandshakeType.AuthChallenge));
      else if (settings.send_hello !== false)
        this.outgoing.push(this.identityFrame(HandshakeType.Hello));
    }
  }

  /** Whether Raft frames may be sent on this connection yet. */
  get may_send_raft(): boolean {
    return this.settings.secret === null || this.state === 'over';
  }

  takeOutgoing(): Buffer[] {
    const frames = this.outgoing;
    this.outgoing = [];
    return frames;
  }

  push(chunk: Buffer): HandshakeResult {
    assert(this.state !== 'over', 'handshake already finished');
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    try {
      for (;;) {
        const result = this.step();
        if (result !== null) return result;
      }
    } catch (error) {
      if (!(error instanceof HandshakeFailure)) throw error;
      this.state = 'over';
      this.buffered = Buffer.alloc(0);
      return { kind: 'failed', reason: error.message, mismatch: error.mismatch };
    }
  }

  /** Handles at most one frame; null when it did and there may be more to do. */
  private step(): HandshakeResult | null {
    if (this.buffered.length < HEADER_BYTES) return this.pending();
    const type = this.buffered.readUInt32LE(0);
    if (this.state === 'first_frame' && this.settings.secret === null && !isHandshakeType(type)) {
      return this.finish(this.peer_id); // a bare-frame peer: everything is Raft
    }
    const frame = this.takeFrame();
    if (frame === null) return this.pending();
    switch (this.state) {
      case 'first_frame':
        return this.onFirstFrame(frame);
      case 'auth_response':
        this.onAuthResponse(frame);
        return this.finish(this.peer_id);
      case 'auth_confirm':
        this.onAuthConfirm(frame);
        return this.finish(this.peer_id);
      case 'over':
        throw new HandshakeFailure('handshake already finished');
    }
  }

  private pending(): HandshakeResult {
    if (this.buffered.length > LIMITS.peer_handshake_bytes_max)
      throw new HandshakeFailure(`more than ${LIMITS.peer_handshake_bytes_max} handshake bytes`);
    return { kind: 'pending' };
  }

  private finish(peer_id: number | null): HandshakeResult {
    this.state = 'over';
    const rest = this.buffered;
    this.buffered = Buffer.alloc(0);
    const incarnation = this.settings.incarnation === undefined ? null : this.peer_identity;
    return {
      kind: 'done',
      peer_id,
      rest,
      peer_incarnation: incarnation === null ? null : incarnationOf(incarnation),
    };
  }

  /** The whole frame at the front of the buffer, or null if it is not all in yet. */
  private takeFrame(): Frame | null {
    const type = this.buffered.readUInt32LE(0);
    const payload_bytes = this.buffered.readUInt32LE(4);
    if (!isHandshakeType(type)) {
      throw new HandshakeFailure(
        `sent frame type ${type} before completing the handshake` +
          (this.settings.secret === null ? '' : ' (no cluster_secret_file configured there?)'),
      );
    }
    if (payload_bytes > LIMITS.peer_handshake_bytes_max - HEADER_BYTES)
      throw new HandshakeFailure(`handshake frame type ${type} claims ${payload_bytes} bytes`);
    if (this.buffered.length < HEADER_BYTES + payload_bytes) return null;
    const payload = this.buffered.subarray(HEADER_BYTES, HEADER_BYTES + payload_bytes);
    this.buffered = this.buffered.subarray(HEADER_BYTES + payload_bytes);
    return { type, payload };
  }

  private onFirstFrame(frame: Frame): HandshakeResult | null {
    const open = this.settings.secret === null;
    if (open && frame.type !== HandshakeType.Hello) {
      throw new HandshakeFailure(
        frame.type === HandshakeType.AuthChallenge
          ? 'requires authentication, but no cluster_secret_file is configured here'
          : `sent handshake frame type ${frame.type} first`,
      );
    }
    if (!open && frame.type !== HandshakeType.AuthChallenge) {
      throw new HandshakeFailure(
        frame.type === HandshakeType.Hello
          ? 'sent an open-mode Hello, but this node requires authentication (cluster_secret_file)'
          : `sent frame type ${frame.type} instead of AuthChallenge`,
      );
    }
    const identity = readIdentity(frame, false);
    this.peer_identity = identity;
    if (this.role === 'acceptor') {
      // A stranger gets no answer (and no MAC computed over its nonce).
      if (!this.settings.peer_ids.has(identity.node_id))
        throw new HandshakeFailure(`claims node id ${identity.node_id}, not one of our peers`);
      // Answer first, so that on a config or incarnation mismatch the dialer learns our member
      // list and what we remember of it, and logs too.
      this.sent_incarnations = this.incarnationFields(identity.node_id);
      if (open) this.outgoing.push(this.identityFrame(HandshakeType.Hello));
      else this.outgoing.push(this.authResponse());
      this.checkIdentity(identity);
      this.peer_id = identity.node_id;
      if (!open) {
        this.state = 'auth_confirm';
        return null; // incarnations once the dialer has proven the secret
      }
      this.checkIncarnation(identity);
      return this.finish(identity.node_id);
    }
    this.checkIdentity(identity); // an open-mode dialer receiving the acceptor's Hello
    this.checkIncarnation(identity);
    return this.finish(this.peer_id);
  }

  private onAuthResponse(frame: Frame): void {
    if (frame.type !== HandshakeType.AuthResponse)
      throw new HandshakeFailure(`sent frame type ${frame.type} instead of AuthResponse`);
    const identity = readIdentity(frame, true);
    this.checkIdentity(identity);
    const nonce = identity.nonce;
    assert(nonce !== null, 'an AuthResponse carries a nonce');
    const ids = { dialer: this.settings.self_id, acceptor: identity.node_id };
    const nonces = { dialer: this.own_nonce, acceptor: nonce };
    const incarnations = { dialer: this.sent_incarnations, acceptor: identity.incarnations };
    if (!macEqual(this.mac('A', ids, nonces, incarnations), identity.mac))
      throw new HandshakeFailure('authentication failed: wrong MAC (different cluster secret?)');
    // Confirm even if the incarnations disagree, so that the acceptor, too, can trust and log them.
    const confirm = this.mac('D', ids, nonces, incarnations);
    this.outgoing.push(frameOf(HandshakeType.AuthConfirm, confirm));
    this.peer_identity = identity;
    this.checkIncarnation(identity);
  }

  private onAuthConfirm(frame: Frame): void {
    if (frame.type !== HandshakeType.AuthConfirm || frame.payload.length !== DIGEST_BYTES)
      throw new HandshakeFailure(`sent frame type ${frame.type} instead of AuthConfirm`);
    const challenge = this.peer_identity;
    assert(this.peer_id !== null && challenge !== null, 'challenge seen');
    if (!macEqual(this.acceptorMac('D', challenge), frame.payload))
      throw new HandshakeFailure('authentication failed: wrong MAC (different cluster secret?)');
    this.checkIncarnation(challenge);
  }

  /**
   * Refuses a peer that presents another incarnation than the one remembered for its id, or that
   * remembers this node as another incarnation. Both are config-level news: logged as errors.
   */
  private checkIncarnation(identity: Identity): void {
    const settings = this.settings.incarnation;
    if (settings === undefined || !settings.check) return;
    const id = identity.node_id;
    const presented = incarnationOf(identity);
    if (presented.equals(NO_INCARNATION))
      throw new HandshakeFailure(`node ${id} sent no incarnation (a test build?)`, true);
    const remembered = settings.memory.recall(id);
    if (remembered !== null && !remembered.equals(presented)) {
      throw new HandshakeFailure(
        `node ${id} came back with a new data directory (incarnation ` +
          `${describeIncarnation(presented)}, was ${describeIncarnation(remembered)}): it lost ` +
          `its log and its vote and cannot rejoin as node ${id}; replace it: on the leader ` +
          `\`RAFT.NODE REMOVE ${id}\`, then add the machine as a new node ` +
          '(README: Replace a failed node)',
        true,
      );
    }
    const remembers_us = identity.incarnations.subarray(INCARNATION_BYTES);
    if (!remembers_us.equals(NO_INCARNATION) && !remembers_us.equals(settings.own)) {
      const self = this.settings.self_id;
      throw new HandshakeFailure(
        `node ${id} refuses this node: it remembers node ${self} as incarnation ` +
          `${describeIncarnation(remembers_us)}, but this data directory is incarnation ` +
          `${describeIncarnation(settings.own)}: this node lost its data directory (its log and ` +
          `its vote) and cannot rejoin as node ${self}; replace it: on the leader ` +
          `\`RAFT.NODE REMOVE ${self}\`, then start this machine with an empty data directory ` +
          'as a new node (README: Replace a failed node)',
        true,
      );
    }
  }

  /** Our incarnation and the one we remember for `peer_id`, as sent in our identity frame. */
  private incarnationFields(peer_id: number): Buffer {
    const settings = this.settings.incarnation;
    if (settings === undefined) return Buffer.alloc(2 * INCARNATION_BYTES);
    assert(settings.own.length === INCARNATION_BYTES, 'an incarnation is 16 bytes');
    return Buffer.concat([settings.own, settings.memory.recall(peer_id) ?? NO_INCARNATION]);
  }

  private checkIdentity(identity: Identity): void {
    const { node_id } = identity;
    if (this.role === 'dialer' && node_id !== this.peer_id)
      throw new HandshakeFailure(
        `answered as node ${node_id}, but we dialled node ${this.peer_id}`,
      );
    if (this.role === 'acceptor' && !this.settings.peer_ids.has(node_id))
      throw new HandshakeFailure(`claims node id ${node_id}, which is not one of our peers`);
    if (!identity.fingerprint.equals(this.settings.fingerprint)) {
      throw new HandshakeFailure(
        `cluster config mismatch with node ${node_id}: our members [${this.settings.members}] ` +
          `fingerprint ${shortHex(this.settings.fingerprint)}, theirs [${identity.members}] ` +
          `fingerprint ${shortHex(identity.fingerprint)}`,
        true,
      );
    }
  }

  private identityFrame(type: number): Buffer {
    const nonce = type === HandshakeType.AuthChallenge ? this.own_nonce : null;
    return frameOf(type, ...identityFields(this.settings, this.sent_incarnations, nonce, null));
  }

  private authResponse(): Buffer {
    const challenge = this.peer_identity;
    assert(challenge !== null, 'challenge seen');
    const mac = this.acceptorMac('A', challenge);
    return frameOf(
      HandshakeType.AuthResponse,
      ...identityFields(this.settings, this.sent_incarnations, this.own_nonce, mac),
    );
  }

  /** The acceptor's mac_a or expected mac_d for the dialer's `challenge`. */
  private acceptorMac(role: 'A' | 'D', challenge: Identity): Buffer {
    assert(challenge.nonce !== null, 'a challenge carries a nonce');
    return this.mac(
      role,
      { dialer: challenge.node_id, acceptor: this.settings.self_id },
      { dialer: challenge.nonce, acceptor: this.own_nonce },
      { dialer: challenge.incarnations, acceptor: this.sent_incarnations },
    );
  }

  private mac(
    role: 'A' | 'D',
    ids: BySide<number>,
    nonces: BySide<Buffer>,
    incarnations: BySide<Buffer>,
  ): Buffer {
    const secret = this.settings.secret;
    assert(secret !== null, 'MACs need the secret');
    const id_bytes = Buffer.alloc(2 * ID_BYTES);
    id_bytes.writeInt32LE(ids.dialer, 0);
    id_bytes.writeInt32LE(ids.acceptor, ID_BYTES);
    return createHmac('sha256', secret)
      .update(MAC_LABEL)
      .update(role)
      .update(this.settings.fingerprint)
      .update(id_bytes)
      .update(nonces.dialer)
      .update(nonces.acceptor)
      .update(incarnations.dialer)
      .update(incarnations.acceptor)
      .digest();
  }
}

interface BySide<T> {
  dialer: T;
  acceptor: T;
}

interface Identity {
  node_id: number;
  fingerprint: Buffer;
  /** The sender's incarnation, then the one it remembers for the receiver (16 bytes each). */
  incarnations: Buffer;
  nonce: Buffer | null;
  mac: Buffer;
  members: string;
}

function incarnationOf(identity: Identity): Buffer {
  return identity.incarnations.subarray(0, INCARNATION_BYTES);
}

function isHandshakeType(type: number): boolean {
  return type >= HandshakeType.Hello && type <= HandshakeType.AuthConfirm;
}

function identityFields(
  settings: HandshakeSettings,
  incarnations: Buffer,
  nonce: Buffer | null,
  mac: Buffer | null,
): Buffer[] {
  const id = Buffer.alloc(ID_BYTES);
  id.writeInt32LE(settings.self_id, 0);
  const members = Buffer.from(settings.members, 'utf8').subarray(
    0,
    LIMITS.peer_members_text_bytes_max,
  );
  const members_length = Buffer.alloc(4);
  members_length.writeUInt32LE(members.length, 0);
  const fields = [id, settings.fingerprint, incarnations];
  if (nonce !== null) fields.push(nonce);
  if (mac !== null) fields.push(mac);
  fields.push(members_length, members);
  return fields;
}

/** Parses Hello / AuthChallenge (nonce) / AuthResponse (nonce and mac). */
function readIdentity(frame: Frame, with_mac: boolean): Identity {
  const payload = frame.payload;
  const with_nonce = frame.type !== HandshakeType.Hello;
  const fixed_bytes =
    ID_BYTES +
    DIGEST_BYTES +
    2 * INCARNATION_BYTES +
    (with_nonce ? NONCE_BYTES : 0) +
    (with_mac ? DIGEST_BYTES : 0) +
    4;
  if (payload.length < fixed_bytes)
    throw new HandshakeFailure(`handshake frame type ${frame.type} is too short`);
  let at = 0;
  const node_id = payload.readInt32LE(at);
  at += ID_BYTES;
  const fingerprint = payload.subarray(at, at + DIGEST_BYTES);
  at += DIGEST_BYTES;
  const incarnations = Buffer.from(payload.subarray(at, at + 2 * INCARNATION_BYTES));
  at += 2 * INCARNATION_BYTES;
  let nonce: Buffer | null = null;
  if (with_nonce) {
    nonce = Buffer.from(payload.subarray(at, at + NONCE_BYTES));
    at += NONCE_BYTES;
  }
  let mac: Buffer = Buffer.alloc(0);
  if (with_mac) {
    mac = payload.subarray(at, at + DIGEST_BYTES);
    at += DIGEST_BYTES;
  }
  const members_bytes = payload.readUInt32LE(at);
  at += 4;
  if (members_bytes !== payload.length - at)
    throw new HandshakeFailure(
      `handshake frame type ${frame.type} has a bad members length (another version?)`,
    );
  const members = payload
    .subarray(at)
    .toString('utf8')
    .replace(/[^\x20-\x7e]/g, '?');
  return { node_id, fingerprint: Buffer.from(fingerprint), incarnations, nonce, mac, members };
}

function frameOf(type: number, ...fields: Buffer[]): Buffer {
  const payload = Buffer.concat(fields);
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32LE(type, 0);
  header.writeUInt32LE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

function macEqual(expected: Buffer, received: Buffer): boolean {
  return received.length === expected.length && timingSafeEqual(expected, received);
}

function shortHex(fingerprint: Buffer): string {
  return fingerprint.subarray(0, 8).toString('hex');
}
