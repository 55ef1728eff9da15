import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Member, quorumMatch, sortDescending } from '../../src/raft/membership';
import { SeededRandom } from '../../src/util/prng';

test('quorumMatch is the highest index a majority of the voters hold; learners never count', () => {
  const seed = Date.now() >>> 0;
  const random = new SeededRandom(seed);
  for (let round = 0; round < 2000; round++) {
    const members: Member[] = [];
    const match = new Map<number, number>();
    const count = random.int(8);
    for (let id = 1; id <= count; id++) {
      members.push({ id, voter: random.int(4) !== 0, address: '' });
      match.set(id, random.int(20));
    }
    const got = quorumMatch({ members, next_id: count + 1 }, (id) => match.get(id) ?? 0);
    // By definition: the largest index held by at least a majority of the voters.
    const voters = members.filter((m) => m.voter).map((m) => match.get(m.id) ?? 0);
    const majority = Math.floor(voters.length / 2) + 1;
    let expected = 0;
    for (const candidate of voters)
      if (voters.filter((held) => held >= candidate).length >= majority)
        expected = Math.max(expected, candidate);
    assert.equal(got, expected, `seed ${seed} round ${round}: ${JSON.stringify(members)}`);
  }
});

test('sortDescending sorts in place, largest first, infinities included', () => {
  const seed = Date.now() >>> 0;
  const random = new SeededRandom(seed);
  for (let round = 0; round < 500; round++) {
    const values: number[] = [];
    for (let i = random.int(9); i > 0; i--) {
      const pick = random.int(12);
      values.push(pick === 10 ? Infinity : pick === 11 ? -Infinity : pick);
    }
    const expected = [...values].sort((a, b) => b - a);
    sortDescending(values);
    assert.deepEqual(values, expected, `seed ${seed}`);
  }
});
