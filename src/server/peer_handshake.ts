/**
 * The first bytes of every Raft peer connection, before any Raft frame: the
 * cluster fingerprint exchange and, with a cluster secret, mutual
 * authentication. Frames use the Raft frame header `[type u32][payload_size u32]`
 * with type numbers after the Raft messages (1..8); integers little-endian.
 *
 *   Hello          9  [node_id i32][fingerprint 32][members_len u32][members]
 *   AuthChallenge 10  [node_id i32][fingerprint 32][nonce 32][members_len u32][members]
 *   AuthResponse  11  [node_id i32][fingerprint 32][nonce 32][mac 32][members_len u32][members]
 *   AuthConfirm   12  [mac 32]
 *
 * `members` is the sender's member list as text (describeMembers), only for the
 * log line of a mismatch; the fingerprint is what is compared.
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
 * mac_a = HMAC-SHA256(secret, "kvstore-peer-auth-v1" | "A" | fingerprint |
 * d_id i32 | a_id i32 | nonce_d | nonce_a); D checks A's id, fingerprint and
 * mac_a, then sends AuthConfirm with mac_d, the same HMAC with "D" for "A".
 * A checks mac_d. Only then does either side read a Raft frame; each side has
 * proven to the other that it holds the secret, for this connection's fresh
 * nonces (no replay), in its role (no reflection), and the ids it claimed are
 * fixed for the connection. MACs are compared in constant time.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
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
const MAC_LABEL = Buffer.from('kvstore-peer-auth-v1', 'latin1');

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
}

export type HandshakeResult =
  | { kind: 'pending' }
  /**
   * `peer_id`: who the peer is (authenticated with a secret, claimed in open mode) or null for a
   * bare-frame peer. `rest`: bytes after the handshake, for the Raft decoder.
   */
  | { kind: 'done'; peer_id: number | null; rest: Buffer }
  /** `mismatch`: the configs disagree (worth one loud log line rather than a debug one). */
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
  private peer_nonce: Buffer | null = null;
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
    return { kind: 'done', peer_id, rest };
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
    if (this.role === 'acceptor') {
      // A stranger gets no answer (and no MAC computed over its nonce).
      if (!this.settings.peer_ids.has(identity.node_id))
        throw new HandshakeFailure(`claims node id ${identity.node_id}, not one of our peers`);
      // Answer first, so that on a config mismatch the dialer learns our member list and logs too.
      if (open) this.outgoing.push(this.identityFrame(HandshakeType.Hello));
      else {
        this.peer_nonce = identity.nonce;
        this.outgoing.push(this.authResponse(identity.node_id));
      }
      this.checkIdentity(identity);
      this.peer_id = identity.node_id;
      if (open) return this.finish(identity.node_id);
      this.state = 'auth_confirm';
      return null;
    }
    this.checkIdentity(identity); // an open-mode dialer receiving the acceptor's Hello
    return this.finish(this.peer_id);
  }

  private onAuthResponse(frame: Frame): void {
    if (frame.type !== HandshakeType.AuthResponse)
      throw new HandshakeFailure(`sent frame type ${frame.type} instead of AuthResponse`);
    const identity = readIdentity(frame, true);
    this.checkIdentity(identity);
    const nonce = identity.nonce;
    assert(nonce !== null, 'an AuthResponse carries a nonce');
    const dialer_id = this.settings.self_id;
    const expected = this.mac('A', dialer_id, identity.node_id, this.own_nonce, nonce);
    if (!macEqual(expected, identity.mac))
      throw new HandshakeFailure('authentication failed: wrong MAC (different cluster secret?)');
    const confirm = this.mac('D', dialer_id, identity.node_id, this.own_nonce, nonce);
    this.outgoing.push(frameOf(HandshakeType.AuthConfirm, confirm));
  }

  private onAuthConfirm(frame: Frame): void {
    if (frame.type !== HandshakeType.AuthConfirm || frame.payload.length !== DIGEST_BYTES)
      throw new HandshakeFailure(`sent frame type ${frame.type} instead of AuthConfirm`);
    assert(this.peer_id !== null && this.peer_nonce !== null, 'challenge seen');
    const expected = this.mac(
      'D',
      this.peer_id,
      this.settings.self_id,
      this.peer_nonce,
      this.own_nonce,
    );
    if (!macEqual(expected, frame.payload))
      throw new HandshakeFailure('authentication failed: wrong MAC (different cluster secret?)');
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
    return frameOf(type, ...identityFields(this.settings, nonce, null));
  }

  private authResponse(dialer_id: number): Buffer {
    assert(this.peer_nonce !== null, 'challenge seen');
    const mac = this.mac('A', dialer_id, this.settings.self_id, this.peer_nonce, this.own_nonce);
    return frameOf(
      HandshakeType.AuthResponse,
      ...identityFields(this.settings, this.own_nonce, mac),
    );
  }

  private mac(
    role: 'A' | 'D',
    dialer_id: number,
    acceptor_id: number,
    dialer_nonce: Buffer,
    acceptor_nonce: Buffer,
  ): Buffer {
    const secret = this.settings.secret;
    assert(secret !== null, 'MACs need the secret');
    const ids = Buffer.alloc(2 * ID_BYTES);
    ids.writeInt32LE(dialer_id, 0);
    ids.writeInt32LE(acceptor_id, ID_BYTES);
    return createHmac('sha256', secret)
      .update(MAC_LABEL)
      .update(role)
      .update(this.settings.fingerprint)
      .update(ids)
      .update(dialer_nonce)
      .update(acceptor_nonce)
      .digest();
  }
}

interface Identity {
  node_id: number;
  fingerprint: Buffer;
  nonce: Buffer | null;
  mac: Buffer;
  members: string;
}

function isHandshakeType(type: number): boolean {
  return type >= HandshakeType.Hello && type <= HandshakeType.AuthConfirm;
}

function identityFields(
  settings: HandshakeSettings,
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
  const fields = [id, settings.fingerprint];
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
    ID_BYTES + DIGEST_BYTES + (with_nonce ? NONCE_BYTES : 0) + (with_mac ? DIGEST_BYTES : 0) + 4;
  if (payload.length < fixed_bytes)
    throw new HandshakeFailure(`handshake frame type ${frame.type} is too short`);
  let at = 0;
  const node_id = payload.readInt32LE(at);
  at += ID_BYTES;
  const fingerprint = payload.subarray(at, at + DIGEST_BYTES);
  at += DIGEST_BYTES;
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
    throw new HandshakeFailure(`handshake frame type ${frame.type} has a bad members length`);
  const members = payload
    .subarray(at)
    .toString('utf8')
    .replace(/[^\x20-\x7e]/g, '?');
  return { node_id, fingerprint: Buffer.from(fingerprint), nonce, mac, members };
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
