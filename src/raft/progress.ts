/**
 * The leader's view of one follower (thesis §3.5, §10.2.1): how much of the
 * log it is known to hold, where to send next, and what is in flight.
 *
 * probe: we do not know where the follower's log matches ours; one
 *   AppendEntries at a time, each waiting for its answer (or the next
 *   heartbeat) before the next is sent.
 * replicate: the follower accepted our last probe; stream entries
 *   optimistically, up to `inflight_messages_max` messages in flight.
 */
export type ProgressState = 'probe' | 'replicate';

export interface Inflight {
  seq: number;
  prev_index: number;
  last_index: number;
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** probe: a probe is outstanding; wait for its answer or the next heartbeat. */
  probe_sent = false;
  /**
   * seq of the first probe sent at the current `next`, null if none yet. Every
   * probe since then asks the same question, so an answer to any of them is
   * current: a follower slower than the heartbeat still gets its answers heard.
   */
  probe_first_seq: number | null = null;
  inflights: Inflight[] = [];
  /** Heard from this follower since the last CheckQuorum round. */
  recent_active = false;
  /** Highest `ack` received in the current term (for ReadIndex), null if none yet. */
  max_ack: number | null = null;

  constructor(next: number) {
    this.next = next;
  }

  becomeProbe(): void {
    this.state = 'probe';
    this.probe_sent = false;
    this.probe_first_seq = null;
    this.inflights = [];
    this.next = Math.max(this.next, this.match + 1);
  }

  becomeReplicate(): void {
    this.state = 'replicate';
    this.probe_sent = false;
    this.probe_first_seq = null;
    this.inflights = [];
    this.next = this.match + 1;
  }

  /**
   * Frees every in-flight message acknowledged by `ack` (TCP keeps our order; the simulator may
   * not).
   * Seqs here are the leader's full, ever-increasing counter; only their low 32 bits go on the
   * wire.
   */
  freeUpTo(ack: number): void {
    let drop = 0;
    while (drop < this.inflights.length && this.inflights[drop]!.seq <= ack) drop++;
    if (drop > 0) this.inflights.splice(0, drop);
  }

  /** Whether `ack` answers a probe sent at the current `next`. */
  answersCurrentProbe(ack: number): boolean {
    return this.probe_first_seq !== null && this.probe_first_seq <= ack;
  }

  noteSent(seq: number): void {
    this.probe_sent = true;
    if (this.probe_first_seq === null) this.probe_first_seq = seq;
  }

  noteAck(ack: number): void {
    if (this.max_ack === null || this.max_ack < ack) this.max_ack = ack;
  }
}
