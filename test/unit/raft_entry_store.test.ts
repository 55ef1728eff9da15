/**
 * The in-memory log's compact entry storage: entries round-trip, views handed out stay valid
 * after drops and truncations (their bytes are never reused), large and empty entries, and block
 * boundaries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EntryStore } from '../../src/raft/entry_store';
import { LIMITS } from '../../src/util/limits';

const bytes = (length: number, fill: number): Uint8Array => new Uint8Array(length).fill(fill);

test('entries round-trip across block boundaries, with empty and large ones', () => {
  const store = new EntryStore();
  const sizes = [0, 1, 100, LIMITS.log_block_entry_bytes_max, LIMITS.log_block_entry_bytes_max + 1];
  const expected: Array<{ term: number; data: Uint8Array }> = [];
  // Enough entries to fill several blocks.
  for (let i = 0; expected.length < 40; i++) {
    const entry = { term: i + 1, data: bytes(sizes[i % sizes.length] as number, i & 0xff) };
    store.push(entry);
    expected.push(entry);
  }
  assert.equal(store.length, expected.length);
  for (const [i, entry] of expected.entries()) {
    const got = store.get(i);
    assert.ok(got !== undefined);
    assert.equal(got.term, entry.term);
    assert.equal(store.term(i), entry.term);
    assert.equal(store.dataLength(i), entry.data.length);
    assert.ok(Buffer.from(got.data).equals(Buffer.from(entry.data)), `entry ${i} data`);
  }
  assert.equal(store.get(expected.length), undefined);
  assert.equal(store.term(expected.length), -1);
});

test('the store copies: changing the appended buffer afterwards changes nothing', () => {
  const store = new EntryStore();
  const data = bytes(10, 7);
  store.push({ term: 1, data });
  data.fill(9);
  assert.deepEqual([...(store.get(0)?.data ?? [])], new Array(10).fill(7));
});

test('views handed out survive dropFront and truncate: bytes are never reused', () => {
  const store = new EntryStore();
  for (let i = 0; i < 10; i++) store.push({ term: 1, data: bytes(50, i) });
  const views = store.range(0, 10).map((entry) => entry.data);
  store.truncate(5);
  for (let i = 5; i < 10; i++) store.push({ term: 2, data: bytes(50, 100 + i) });
  store.dropFront(3);
  for (let i = 0; i < 10; i++) store.push({ term: 3, data: bytes(50, 200 + i) });
  for (const [i, view] of views.entries())
    assert.ok(
      view.every((b) => b === i),
      `view ${i}`,
    );
  assert.equal(store.length, 17);
  assert.equal(store.term(0), 1);
  assert.equal(store.get(0)?.data[0], 3);
  assert.equal(store.term(2), 2);
  assert.equal(store.get(2)?.data[0], 105);
  assert.deepEqual(
    store.range(6, 9).map((entry) => entry.data[0]),
    [109, 200, 201],
  );
});
