import { assert } from '../util/assert';
import { Inflights } from './inflights';

/**
 * The leader's view of one follower (thesis §3.5, §10.2.1): how much of the
 * log it is known to hold, where to send next, and what is in flight.
 *
 * probe: we do not know where the follower's log matches ours; one
 *   AppendEntries at a time, each waiting for its answer (or the next
 *   heartbeat) before the next is sent.
 * replicate: the follower accepted our last probe; stream entries
 *   optimistically, up to `inflight_messages_max` messages in flight.
 * snapshot: the follower needs entries we compacted away; the server streams it
 *   our newest durable snapshot (at least `pending_snapshot`) and no AppendEntries
 *   but heartbeats go out. Installed → probe after the snapshot; aborted → probe
 *   (etcd's StateSnapshot).
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/**
 * A small state machine (etcd's tracker/progress.go is the model): the core
 * moves it only through the transitions below (onSent, onAccepted,
 * onRejected, allowProbeRetry), each of which keeps, and asserts,
 * 0 <= match < next: every entry up to match is on the follower, next is the
 * first we have not sent it, so the two never cross.
 */
export class Progress {
  private match_index = 0;
  private next_index: number;
  private state_now: ProgressState = 'probe';
  /** probe: a probe is outstanding; wait for its answer or the next heartbeat. */
  private probe_sent = false;
  /**
   * seq of the first probe sent at the current `next`, null if none yet. Every
   * probe since then asks the same question, so an answer to any of them is
   * current: a follower slower than the heartbeat still gets its answers heard.
   */
  private probe_first_seq: number | null = null;
  /** replicate: the messages with entries sent and not yet answered. */
  private readonly inflights: Inflights;
  /** Heard from this follower since the last CheckQuorum round. */
  recent_active = false;
  /** Highest `ack` of a successful answer in the current term (for ReadIndex), null if none yet. */
  private max_ack_seen: number | null = null;
  /** snapshot: the index of our newest durable snapshot when the transfer started. */
  private pending_snapshot_index = 0;

  constructor(next: number, inflight_messages_max: number) {
    this.next_index = next;
    this.inflights = new Inflights(inflight_messages_max);
    this.checkInvariant();
  }

  /** Highest index known to be on the follower's log. */
  get match(): number {
    return this.match_index;
  }

  /** Index of the next entry to send. */
  get next(): number {
    return this.next_index;
  }

  get state(): ProgressState {
    return this.state_now;
  }

  get inflight_messages(): number {
    return this.inflights.count;
  }

  get max_ack(): number | null {
    return this.max_ack_seen;
  }

  /** snapshot state: the snapshot index the transfer started with; 0 otherwise. */
  get pending_snapshot(): number {
    return this.state_now === 'snapshot' ? this.pending_snapshot_index : 0;
  }

  /** A snapshot transfer (of a snapshot at `index`) starts: no AppendEntries until it ends. */
  becomeSnapshot(index: number): void {
    assert(index >= this.next_index - 1, `snapshot ${index} covers next ${this.next_index}`);
    this.becomeProbe();
    this.state_now = 'snapshot';
    this.pending_snapshot_index = index;
    this.checkInvariant();
  }

  /**
   * The transfer ended: installed (the follower now matches up to `matched`, 0 if unknown) or
   * aborted (matched 0). Either way probe from the follower's match point.
   */
  onSnapshotEnded(matched: number): void {
    assert(this.state_now === 'snapshot', 'a snapshot transfer ends only in snapshot state');
    if (matched > this.match_index) this.match_index = matched;
    this.becomeProbe();
    this.next_index = this.match_index + 1;
    this.checkInvariant();
  }

  /**
   * Whether flow control lets us send an AppendEntries now: in probe, unless a probe is already
   * outstanding (it may carry no entries); in replicate, if the window has room and there is an
   * entry the follower has not been sent.
   */
  canSend(last_index: number): boolean {
    if (this.state_now === 'probe') return !this.probe_sent;
    if (this.state_now === 'snapshot') return false;
    return !this.inflights.full && this.next_index <= last_index;
  }

  /** An AppendEntries with `entry_count` entries starting at `next` went out with this seq. */
  onSent(seq: number, entry_count: number): void {
    if (this.state_now === 'probe') {
      this.probe_sent = true;
      if (this.probe_first_seq === null) this.probe_first_seq = seq;
    } else {
      assert(entry_count > 0, 'replicate sends only messages with entries');
      this.inflights.push({ seq, prev_index: this.next_index - 1 });
      this.next_index += entry_count;
    }
    this.checkInvariant();
  }

  /** A heartbeat is due: in probe it doubles as a retry of a probe that may have been lost. */
  allowProbeRetry(): void {
    assert(this.state_now === 'probe', 'probe retries are for probe state');
    this.probe_sent = false;
  }

  /**
   * A successful answer to the message with seq `ack`: the follower holds our log up to `matched`
   * (0 if the answer names no index of our log).
   */
  onAccepted(ack: number, matched: number): void {
    if (this.max_ack_seen === null || this.max_ack_seen < ack) this.max_ack_seen = ack;
    if (matched > this.match_index) this.match_index = matched;
    if (this.state_now === 'snapshot') {
      // A heartbeat answer: the core ends the transfer if the follower is now reachable by log.
      this.next_index = Math.max(this.next_index, this.match_index + 1);
      this.checkInvariant();
      return;
    }
    const overtaken = this.next_index <= this.match_index;
    if (this.state_now === 'probe') {
      if (this.answersCurrentProbe(ack)) {
        this.becomeReplicate(); // our probe matched: stream from the follower's match point
      } else if (overtaken) {
        this.becomeProbe(); // an older answer moved match past our probe point: probe from there
      }
    } else {
      if (overtaken) this.next_index = this.match_index + 1;
      this.inflights.freeTo(ack);
      // Every message sent up to `ack` is answered or lost: resend whatever the follower still
      // lacks.
      if (this.inflights.count === 0) this.next_index = this.match_index + 1;
    }
    this.checkInvariant();
  }

  /**
   * The follower rejected the message with seq `ack`; `hint` is where it suggests we resume (its
   * match guess) and `matched` an index it is known to hold (its commit index, 0 if that is not in
   * our log). A stale rejection (of a message we no longer wait for) changes nothing.
   */
  onRejected(ack: number, hint: number, matched: number): void {
    let rejected_prev: number;
    if (this.state_now === 'snapshot') return; // a heartbeat below our snapshot: keep sending it
    if (this.state_now === 'replicate') {
      const inflight = this.inflights.find(ack);
      if (inflight === null || inflight.prev_index <= this.match_index) return; // stale
      rejected_prev = inflight.prev_index;
    } else {
      if (!this.answersCurrentProbe(ack)) return; // answer to a probe at an earlier next
      rejected_prev = this.next_index - 1;
    }
    // A follower's committed prefix matches ours (Leader Completeness).
    if (matched > this.match_index) this.match_index = matched;
    this.becomeProbe();
    this.next_index = Math.max(this.match_index + 1, Math.min(hint + 1, rejected_prev));
    this.checkInvariant();
  }

  /**
   * The follower's log ends before our first retained entry (a rejection said so): whatever is in
   * flight cannot be accepted. Probe from its match point (the core then starts a snapshot).
   */
  onBehindLog(matched: number): void {
    if (this.state_now === 'snapshot') return;
    if (matched > this.match_index) this.match_index = matched;
    this.becomeProbe();
    this.next_index = this.match_index + 1;
    this.checkInvariant();
  }

  /** Whether `ack` answers a probe sent at the current `next`. */
  private answersCurrentProbe(ack: number): boolean {
    return this.probe_first_seq !== null && this.probe_first_seq <= ack;
  }

  private becomeProbe(): void {
    this.state_now = 'probe';
    this.pending_snapshot_index = 0;
    this.probe_sent = false;
    this.probe_first_seq = null;
    this.inflights.reset();
    this.next_index = Math.max(this.next_index, this.match_index + 1);
  }

  private becomeReplicate(): void {
    this.state_now = 'replicate';
    this.probe_sent = false;
    this.probe_first_seq = null;
    this.inflights.reset();
    this.next_index = this.match_index + 1;
  }

  private checkInvariant(): void {
    assert(
      this.match_index >= 0 && this.match_index < this.next_index,
      `progress match ${this.match_index} < next ${this.next_index}`,
    );
    assert(
      this.state_now === 'replicate' || this.inflights.count === 0,
      'nothing is in flight in probe state',
    );
  }
}
