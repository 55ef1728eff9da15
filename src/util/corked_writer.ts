import type { Writable } from 'node:stream';

/**
 * Coalesces the writes of one event-loop turn: the first write corks the stream and schedules the
 * uncork for the next tick, so everything written until then leaves in one writev (one syscall)
 * rather than one packet per message. Pipelined requests and Raft messages produced together
 * typically arrive together, so this costs no latency.
 */
export class CorkedWriter {
  private readonly stream: Writable;
  private cork_pending = false;

  constructor(stream: Writable) {
    this.stream = stream;
  }

  write(bytes: Buffer): void {
    if (!this.cork_pending) {
      this.cork_pending = true;
      this.stream.cork();
      process.nextTick(() => {
        this.cork_pending = false;
        this.stream.uncork();
      });
    }
    this.stream.write(bytes);
  }
}
