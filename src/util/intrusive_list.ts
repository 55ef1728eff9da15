/**
 * A doubly linked list whose links live in the entries themselves: O(1) removal of a known entry
 * and no allocation per insert or removal (emptying a Set or Map reallocates its table, which on
 * the request path was once per request).
 */
export interface ListLinks<T> {
  /** Null at either end, and once removed. */
  prev: T | null;
  next: T | null;
  in_list: boolean;
}

export class IntrusiveList<T extends ListLinks<T>> {
  private head_: T | null = null;
  private tail_: T | null = null;
  private size_ = 0;

  get head(): T | null {
    return this.head_;
  }

  get tail(): T | null {
    return this.tail_;
  }

  get size(): number {
    return this.size_;
  }

  /** Puts `entry` right after `after`, or first when `after` is null. */
  insertAfter(after: T | null, entry: T): void {
    entry.prev = after;
    entry.next = after === null ? this.head_ : after.next;
    if (entry.next === null) this.tail_ = entry;
    else entry.next.prev = entry;
    if (after === null) this.head_ = entry;
    else after.next = entry;
    entry.in_list = true;
    this.size_++;
  }

  append(entry: T): void {
    this.insertAfter(this.tail_, entry);
  }

  /** Takes `entry` out; an entry not in the list is left alone. */
  remove(entry: T): void {
    if (!entry.in_list) return;
    if (entry.prev === null) this.head_ = entry.next;
    else entry.prev.next = entry.next;
    if (entry.next === null) this.tail_ = entry.prev;
    else entry.next.prev = entry.prev;
    entry.prev = null;
    entry.next = null;
    entry.in_list = false;
    this.size_--;
  }
}
