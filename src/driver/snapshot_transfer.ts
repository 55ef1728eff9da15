/**
 * InstallSnapshot's byte stream, beside the core (which decides who needs a snapshot and when one
 * is installed, but never holds file bytes). Shared by the server and the simulator through the
 * ReadyDriver, over injected file access and transport.
 *
 * Leader (SnapshotSender): per follower, streams the newest durable snapshot file in chunks of at
 * most `snapshot_chunk_bytes_max`, with at most `snapshot_chunks_in_flight_max` unacknowledged
 * per follower and `snapshot_send_bytes_total_max` for all followers together (its own budget:
 * AppendEntries and heartbeats never wait behind a transfer's window). Each follower ack names
 * the next offset it wants; a transfer without an answer for `snapshot_stall_ticks` resends from
 * the last acknowledged offset (a lost chunk, a reconnect). It ends when the core's progress
 * leaves the snapshot state (installed, rejected, leadership lost).
 *
 * Follower (SnapshotReceiver): writes chunks in offset order into a temporary file; a chunk that
 * is not the next one (lost, duplicated, damaged) is answered with the offset it wants. A chunk of
 * another snapshot, leader or term abandons the partial file (deleted). The last chunk completes
 * the file: verified, fsync'd, renamed, then offered to the core, which installs it in a Ready.
 */
import { InstallSnapshotStatus, MessageType } from '../raft/protocol';
import type {
  InstallSnapshotRequest,
  InstallSnapshotResponse,
  RaftMessage,
} from '../raft/protocol';
import type { NodeId, SnapshotPoint } from '../raft/types';
import type { Membership } from '../raft/membership';
import { crc32 } from '../storage/frame';
import { assert } from '../util/assert';
import { StorageCorruptError } from '../util/errors';
import { LIMITS } from '../util/limits';

/** The leader's newest snapshot file, read in chunks. */
export interface SnapshotChunkSource {
  readonly index: number;
  readonly term: number;
  readonly total_bytes: number;
  read(
    offset: number,
    bytes_max: number,
    done: (error: Error | null, data: Uint8Array) => void,
  ): void;
  close(): void;
}

/** A snapshot being received into a temporary file. */
export interface SnapshotChunkSink {
  write(offset: number, data: Uint8Array, done: (error: Error | null) => void): void;
  /**
   * Verifies, makes durable under the final name; an error means the file was discarded. On
   * success `membership` is the configuration the snapshot records (absent in old files).
   */
  finish(done: (error: Error | null, membership?: Membership) => void): void;
  abandon(): void;
}

export interface SnapshotTransferStorage {
  /** The newest durable snapshot file, or null if there is none. */
  openNewest(done: (error: Error | null, source: SnapshotChunkSource | null) => void): void;
  receive(
    point: SnapshotPoint,
    total_bytes: number,
    done: (error: Error | null, sink: SnapshotChunkSink | null) => void,
  ): void;
}

export interface SnapshotTransferHost {
  readonly id: NodeId;
  send(to: NodeId, message: RaftMessage): void;
  /** The core's term and role now. */
  term(): number;
  isLeader(): boolean;
  leaderId(): NodeId;
  /** Leader: whether the core still waits for a snapshot transfer to `to`. */
  awaitingSnapshot(to: NodeId): boolean;
  /** Leader: no snapshot could be sent to `to`. */
  sendFailed(to: NodeId): void;
  /** Leader: the snapshot file at `point` failed its checksum as it was read: it is not sent. */
  sourceDamaged(point: SnapshotPoint, reason: string): void;
  /** Leader: a whole snapshot file was read and its checksum matched. */
  sourceVerified(): void;
  /** Follower: a complete, durable snapshot from `from` (leader of `term`). */
  received(from: NodeId, term: number, point: SnapshotPoint, membership?: Membership): void;
}

export interface SnapshotTransferStats {
  snapshots_sent: number;
  snapshots_received: number;
  snapshot_chunks_sent: number;
}

interface Outgoing {
  to: NodeId;
  term: number;
  source: SnapshotChunkSource | null;
  acked: number;
  sent: number;
  reading: boolean;
  idle_ticks: number;
  closed: boolean;
}

interface Incoming {
  from: NodeId;
  term: number;
  point: SnapshotPoint;
  total_bytes: number;
  sink: SnapshotChunkSink | null;
  next: number;
  queue: InstallSnapshotRequest[];
  busy: boolean;
  abandoned: boolean;
}

export class SnapshotSender {
  private readonly outgoing = new Map<NodeId, Outgoing>();
  private unacked_bytes_total = 0;
  /** A file found damaged: never offered again (until sourceReplaced), no follower could use it. */
  private damaged: SnapshotPoint | null = null;

  /** `chunk_bytes`: at most snapshot_chunk_bytes_max (the simulator uses small chunks). */
  constructor(
    private readonly host: SnapshotTransferHost,
    private readonly storage: SnapshotTransferStorage,
    private readonly stats: SnapshotTransferStats,
    private readonly chunk_bytes: number = LIMITS.snapshot_chunk_bytes_max,
  ) {
    assert(
      chunk_bytes >= 1 && chunk_bytes <= LIMITS.snapshot_chunk_bytes_max,
      `snapshot chunk of ${chunk_bytes} bytes within snapshot_chunk_bytes_max`,
    );
  }

  /** The core asks for a transfer to `to` in `term`; a running one to it in that term goes on. */
  start(to: NodeId, term: number): void {
    const running = this.outgoing.get(to);
    if (running !== undefined && running.term === term) return;
    if (running !== undefined) this.close(running);
    const transfer: Outgoing = {
      to,
      term,
      source: null,
      acked: 0,
      sent: 0,
      reading: true,
      idle_ticks: 0,
      closed: false,
    };
    this.outgoing.set(to, transfer);
    this.storage.openNewest((error, source) => {
      transfer.reading = false;
      if (transfer.closed) {
        source?.close();
        return;
      }
      const damaged = this.damaged;
      if (source !== null && damaged?.index === source.index && damaged.term === source.term) {
        source.close();
        this.close(transfer);
        this.host.sendFailed(to);
        return;
      }
      if (error !== null || source === null) {
        this.close(transfer);
        this.host.sendFailed(to);
        return;
      }
      transfer.source = source;
      this.stats.snapshots_sent++;
      this.pump(transfer);
    });
  }

  onResponse(from: NodeId, message: InstallSnapshotResponse): void {
    const transfer = this.outgoing.get(from);
    if (transfer === undefined || transfer.source === null) return;
    if (message.snapshot_index !== transfer.source.index) return;
    if (message.status !== InstallSnapshotStatus.Ack) {
      this.close(transfer);
      return;
    }
    const next = message.next_offset;
    if (next > transfer.source.total_bytes) return; // not a file of this size: not ours
    transfer.idle_ticks = 0;
    // Behind what was acknowledged: the follower lost its partial file; resend from there. Past
    // what was sent: it kept a partial file of an earlier transfer of this snapshot (one closed
    // when its file was found damaged); go on from there, its checksum at the end still decides
    // (a mismatch answers 0 and the transfer starts over, re-verifying our file).
    if (next < transfer.acked || next > transfer.sent) this.rewind(transfer, next);
    else this.setAcked(transfer, next);
    this.pump(transfer);
  }

  /** A newer snapshot file was written (or the damaged one rewritten): offer files again. */
  sourceReplaced(): void {
    this.damaged = null;
  }

  /** Stall detection and the end of transfers the core no longer waits for. */
  tick(): void {
    for (const transfer of [...this.outgoing.values()]) {
      if (
        !this.host.isLeader() ||
        this.host.term() !== transfer.term ||
        !this.host.awaitingSnapshot(transfer.to)
      ) {
        this.close(transfer);
        continue;
      }
      if (++transfer.idle_ticks < LIMITS.snapshot_stall_ticks) continue;
      transfer.idle_ticks = 0;
      this.rewind(transfer, this.resendFrom(transfer));
      this.pump(transfer);
    }
  }

  private pump(transfer: Outgoing): void {
    const source = transfer.source;
    if (source === null || transfer.closed || transfer.reading) return;
    const chunk_bytes = this.chunk_bytes;
    const window_bytes = chunk_bytes * LIMITS.snapshot_chunks_in_flight_max;
    if (transfer.sent >= source.total_bytes) return;
    if (transfer.sent - transfer.acked + chunk_bytes > window_bytes) return;
    if (this.unacked_bytes_total + chunk_bytes > LIMITS.snapshot_send_bytes_total_max) return;
    const offset = transfer.sent;
    transfer.reading = true;
    source.read(offset, chunk_bytes, (error, data) => {
      transfer.reading = false;
      if (transfer.closed || offset !== transfer.sent) {
        this.pump(transfer); // rewound meanwhile
        return;
      }
      if (error !== null || data.length === 0) {
        this.close(transfer);
        if (error instanceof StorageCorruptError) {
          this.damaged = { index: source.index, term: source.term };
          this.host.sourceDamaged(this.damaged, error.message);
        }
        this.host.sendFailed(transfer.to);
        return;
      }
      if (offset + data.length === source.total_bytes) this.host.sourceVerified();
      this.host.send(transfer.to, {
        type: MessageType.InstallSnapshotRequest,
        term: transfer.term,
        leader_id: this.host.id,
        snapshot_index: source.index,
        snapshot_term: source.term,
        offset,
        total_bytes: source.total_bytes,
        chunk_crc: crc32(data),
        data,
      });
      this.stats.snapshot_chunks_sent++;
      transfer.sent += data.length;
      this.unacked_bytes_total += data.length;
      this.pump(transfer);
    });
  }

  /**
   * Where a stalled transfer resends from: the last acknowledged offset, or, once every byte was
   * acknowledged and still no install was reported, the last chunk. A follower killed between
   * receiving and installing lost its partial file: it answers that chunk with offset 0 and the
   * transfer starts over (resending nothing would wait forever).
   */
  private resendFrom(transfer: Outgoing): number {
    const total = transfer.source?.total_bytes ?? 0;
    if (total === 0 || transfer.acked < total) return transfer.acked;
    return Math.floor((total - 1) / this.chunk_bytes) * this.chunk_bytes;
  }

  private setAcked(transfer: Outgoing, acked: number): void {
    this.unacked_bytes_total -= acked - transfer.acked;
    transfer.acked = acked;
  }

  private rewind(transfer: Outgoing, offset: number): void {
    this.unacked_bytes_total -= transfer.sent - transfer.acked;
    transfer.acked = offset;
    transfer.sent = offset;
  }

  private close(transfer: Outgoing): void {
    if (transfer.closed) return;
    transfer.closed = true;
    this.unacked_bytes_total -= transfer.sent - transfer.acked;
    transfer.source?.close();
    if (this.outgoing.get(transfer.to) === transfer) this.outgoing.delete(transfer.to);
  }
}

export class SnapshotReceiver {
  private current: Incoming | null = null;

  constructor(
    private readonly host: SnapshotTransferHost,
    private readonly storage: SnapshotTransferStorage,
    private readonly stats: SnapshotTransferStats,
  ) {}

  /**
   * A chunk the core has already stepped (term checks, election timer). Written only if it comes
   * from the leader of our current term and the core wants a snapshot at that index.
   */
  onChunk(from: NodeId, message: InstallSnapshotRequest, wanted: boolean): void {
    if (message.term !== this.host.term() || this.host.leaderId() !== from) return;
    if (!wanted) {
      this.abandon();
      return;
    }
    let incoming = this.current;
    if (
      incoming === null ||
      incoming.from !== from ||
      incoming.term !== message.term ||
      incoming.point.index !== message.snapshot_index ||
      incoming.point.term !== message.snapshot_term ||
      incoming.total_bytes !== message.total_bytes
    ) {
      this.abandon();
      incoming = {
        from,
        term: message.term,
        point: { index: message.snapshot_index, term: message.snapshot_term },
        total_bytes: message.total_bytes,
        sink: null,
        next: 0,
        queue: [],
        busy: false,
        abandoned: false,
      };
      this.current = incoming;
    }
    if (incoming.queue.length >= 2 * LIMITS.snapshot_chunks_in_flight_max) return; // resent later
    incoming.queue.push(message);
    this.process(incoming);
  }

  /** Abandons a transfer whose leader or term is no longer ours. */
  tick(): void {
    const incoming = this.current;
    if (incoming === null) return;
    if (incoming.term !== this.host.term() || incoming.from !== this.host.leaderId())
      this.abandon();
  }

  /** Drops the partial file, if any. */
  abandon(): void {
    const incoming = this.current;
    if (incoming === null) return;
    this.current = null;
    incoming.abandoned = true;
    incoming.queue = [];
    if (!incoming.busy) incoming.sink?.abandon();
  }

  private process(incoming: Incoming): void {
    while (!incoming.busy && !incoming.abandoned) {
      const chunk = incoming.queue.shift();
      if (chunk === undefined) return;
      if (chunk.offset !== incoming.next || crc32(chunk.data) !== chunk.chunk_crc) {
        this.ack(incoming, incoming.next);
        continue;
      }
      incoming.busy = true;
      if (incoming.sink !== null) this.write(incoming, incoming.sink, chunk);
      else this.open(incoming, chunk);
    }
  }

  private open(incoming: Incoming, chunk: InstallSnapshotRequest): void {
    this.storage.receive(incoming.point, incoming.total_bytes, (error, sink) => {
      if (error !== null || sink === null) {
        incoming.busy = false;
        if (this.current === incoming) this.current = null;
        return;
      }
      incoming.sink = sink;
      this.write(incoming, sink, chunk);
    });
  }

  private write(incoming: Incoming, sink: SnapshotChunkSink, chunk: InstallSnapshotRequest): void {
    sink.write(chunk.offset, chunk.data, (error) => {
      if (incoming.abandoned || error !== null) {
        incoming.busy = false;
        if (this.current === incoming) this.current = null;
        incoming.abandoned = true;
        sink.abandon();
        return;
      }
      incoming.next += chunk.data.length;
      if (incoming.next === incoming.total_bytes) {
        this.ack(incoming, incoming.next); // all bytes in: the leader stops resending
        this.finish(incoming, sink);
        return;
      }
      incoming.busy = false;
      this.ack(incoming, incoming.next);
      this.process(incoming);
    });
  }

  private finish(incoming: Incoming, sink: SnapshotChunkSink): void {
    sink.finish((error, membership) => {
      incoming.busy = false;
      if (this.current === incoming) this.current = null;
      if (error !== null) {
        this.ack(incoming, 0); // damaged in transit or at the source: start over
        return;
      }
      this.stats.snapshots_received++;
      this.host.received(incoming.from, incoming.term, incoming.point, membership);
    });
  }

  private ack(incoming: Incoming, next_offset: number): void {
    this.host.send(incoming.from, {
      type: MessageType.InstallSnapshotResponse,
      term: this.host.term(),
      follower_id: this.host.id,
      snapshot_index: incoming.point.index,
      status: InstallSnapshotStatus.Ack,
      next_offset,
      match_index: 0,
    });
  }
}
