import { assert } from '../util/assert';

/** One AppendEntries message carrying entries, sent and not yet answered. */
export interface Inflight {
  /** The leader's full (never wrapping) seq of the message; only its low 32 bits go on the wire. */
  seq: number;
  /** The message's prev_log_index: its entries start at prev_index + 1. */
  prev_index: number;
}

/**
 * The window of AppendEntries messages in flight to one follower (etcd's
 * tracker/inflights.go): a ring of fixed capacity, oldest first, in the order
 * they were sent, so seqs increase from the oldest to the newest. The leader
 * stops sending when it is full; pushing into a full window is a bug.
 */
export class Inflights {
  private readonly ring: (Inflight | null)[];
  /** Slot of the oldest message. */
  private start = 0;
  private count_now = 0;

  constructor(capacity: number) {
    assert(Number.isInteger(capacity) && capacity > 0, `inflight capacity ${capacity} positive`);
    this.ring = new Array<Inflight | null>(capacity).fill(null);
  }

  get capacity(): number {
    return this.ring.length;
  }

  get count(): number {
    return this.count_now;
  }

  get full(): boolean {
    return this.count_now === this.ring.length;
  }

  push(inflight: Inflight): void {
    assert(!this.full, `push into a full in-flight window (${this.ring.length} messages)`);
    const newest = this.at(this.count_now - 1);
    assert(
      newest === null || newest.seq < inflight.seq,
      `in-flight seq ${inflight.seq} after ${newest?.seq}: messages are pushed in send order`,
    );
    this.ring[(this.start + this.count_now) % this.ring.length] = inflight;
    this.count_now++;
  }

  /**
   * Frees every message with seq <= ack: the follower answered it, or (TCP keeps our order; the
   * simulator may not) the answer to an earlier one is lost for good.
   */
  freeTo(ack: number): void {
    while (this.count_now > 0) {
      const oldest = this.ring[this.start]!;
      if (oldest.seq > ack) return;
      this.ring[this.start] = null;
      this.start = (this.start + 1) % this.ring.length;
      this.count_now--;
    }
  }

  /** The message in flight with this seq, or null. */
  find(seq: number): Inflight | null {
    for (let i = 0; i < this.count_now; i++) {
      const inflight = this.at(i)!;
      if (inflight.seq === seq) return inflight;
    }
    return null;
  }

  reset(): void {
    this.ring.fill(null);
    this.start = 0;
    this.count_now = 0;
  }

  /** The i-th oldest message, null if i is outside the window. */
  private at(i: number): Inflight | null {
    if (i < 0 || i >= this.count_now) return null;
    return this.ring[(this.start + i) % this.ring.length]!;
  }
}
