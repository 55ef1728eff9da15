import { assert } from '../util/assert';
import { Fifo } from '../util/fifo';

interface Waiting {
  is_read: boolean;
  start: (done: () => void) => void;
}

/**
 * Per-connection order, as Redis executes a pipeline: a read waits for the writes sent before it
 * on the same connection, a write waits for the reads sent before it. Runs of the same kind still
 * go concurrently (writes are proposed in order; reads share heartbeat rounds).
 *
 * Counters and a queue rather than a chain of promises: a connection that sends only SETs (or
 * only GETs) starts every command at once, with no allocation beyond its `done` callback.
 */
export class ConnectionOrder {
  private reads_running = 0;
  private writes_running = 0;
  /** Commands that must wait, in connection order. */
  private readonly waiting = new Fifo<Waiting>();
  private drain_scheduled = false;

  /**
   * Starts `start` now, or once every earlier command of the other kind has called its `done`.
   * `done` must be called exactly once, when the command's outcome is final.
   */
  run(is_read: boolean, start: (done: () => void) => void): void {
    const blocking = is_read ? this.writes_running : this.reads_running;
    if (this.waiting.length === 0 && blocking === 0) this.start(is_read, start);
    else this.waiting.push({ is_read, start });
  }

  private start(is_read: boolean, start: (done: () => void) => void): void {
    if (is_read) this.reads_running++;
    else this.writes_running++;
    let finished = false;
    start(() => {
      assert(!finished, 'a command of a connection finished twice');
      finished = true;
      if (is_read) this.reads_running--;
      else this.writes_running--;
      if (this.waiting.length > 0) this.scheduleDrain();
    });
  }

  /**
   * Later, not inside `done`: that runs while the driver applies a Ready, and starting commands
   * there would propose in the middle of it.
   */
  private scheduleDrain(): void {
    if (this.drain_scheduled) return;
    this.drain_scheduled = true;
    queueMicrotask(() => {
      this.drain_scheduled = false;
      for (let next = this.waiting.peek(); next !== undefined; next = this.waiting.peek()) {
        if ((next.is_read ? this.writes_running : this.reads_running) > 0) return;
        this.waiting.shift();
        this.start(next.is_read, next.start);
      }
    });
  }
}
