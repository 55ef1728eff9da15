/**
 * A first-in first-out queue with O(1) shift (Array#shift is O(n) on long arrays): a ring buffer
 * whose capacity doubles as needed. It keeps its (small) array while it empties and refills: a
 * connection's reply slots go empty and non-empty for every request, and a fresh array each time
 * was garbage per request. A large one is released once empty.
 */
export class Fifo<T> {
  /** Capacity is a power of two (or 0). */
  private items: (T | undefined)[] = [];
  private head = 0;
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(item: T): void {
    if (this.count === this.items.length) this.grow();
    this.items[(this.head + this.count) & (this.items.length - 1)] = item;
    this.count += 1;
  }

  peek(): T | undefined {
    return this.count === 0 ? undefined : this.items[this.head];
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined; // drop the reference at once
    this.head = (this.head + 1) & (this.items.length - 1);
    this.count -= 1;
    if (this.count === 0) {
      this.head = 0;
      if (this.items.length > KEPT_CAPACITY_MAX) this.items = [];
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
    this.count = 0;
  }

  /** Removes and returns every item, oldest first. */
  drain(): T[] {
    const drained: T[] = [];
    for (let i = 0; i < this.count; i++)
      drained.push(this.items[(this.head + i) & (this.items.length - 1)] as T);
    this.clear();
    return drained;
  }

  private grow(): void {
    const capacity = Math.max(INITIAL_CAPACITY, this.items.length * 2);
    const next: (T | undefined)[] = new Array<T | undefined>(capacity);
    for (let i = 0; i < this.count; i++)
      next[i] = this.items[(this.head + i) & (this.items.length - 1)];
    this.items = next;
    this.head = 0;
  }
}

const INITIAL_CAPACITY = 4;
/** An emptied queue keeps an array up to this capacity; a larger one is given back. */
const KEPT_CAPACITY_MAX = 64;
