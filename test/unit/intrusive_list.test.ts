import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeadlineList, type DeadlineEntry } from '../../src/server/request_deadlines';
import { IntrusiveList, type ListLinks } from '../../src/util/intrusive_list';

interface Item extends ListLinks<Item> {
  name: string;
}

const item = (name: string): Item => ({ name, prev: null, next: null, in_list: false });

function names(list: IntrusiveList<Item>): string[] {
  const out: string[] = [];
  for (let at = list.head; at !== null; at = at.next) out.push(at.name);
  const backwards: string[] = [];
  for (let at = list.tail; at !== null; at = at.prev) backwards.push(at.name);
  assert.deepEqual(backwards.reverse(), out, 'links agree both ways');
  assert.equal(list.size, out.length);
  return out;
}

test('intrusive list: append, insert after, remove anywhere, remove twice', () => {
  const list = new IntrusiveList<Item>();
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(item) as [Item, Item, Item, Item];
  list.append(a);
  list.append(c);
  list.insertAfter(a, b);
  list.insertAfter(null, d);
  assert.deepEqual(names(list), ['d', 'a', 'b', 'c']);
  list.remove(b);
  list.remove(b);
  assert.deepEqual(names(list), ['d', 'a', 'c']);
  assert.equal(b.in_list, false);
  list.remove(d);
  list.remove(c);
  assert.deepEqual(names(list), ['a']);
  list.remove(a);
  assert.deepEqual(names(list), []);
  assert.equal(list.head, null);
  assert.equal(list.tail, null);
});

test('deadline list: expires in deadline order up to now, removed entries never', () => {
  const list = new DeadlineList();
  const expired: number[] = [];
  const entry = (deadline_ms: number): DeadlineEntry => ({
    deadline_ms,
    prev: null,
    next: null,
    in_list: false,
    expire: () => expired.push(deadline_ms),
  });
  const entries = [30, 10, 20, 50, 40].map(entry);
  for (const e of entries) list.add(e);
  list.remove(entries[2]!);
  list.expireUpTo(35);
  assert.deepEqual(expired, [10, 30]);
  assert.equal(list.size, 2);
  list.expireUpTo(100);
  assert.deepEqual(expired, [10, 30, 40, 50]);
  assert.equal(list.size, 0);
});
