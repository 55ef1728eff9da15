import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Fifo } from '../../src/util/fifo';
import { SeededRandom } from '../../src/util/prng';

test('Fifo keeps first-in first-out order through growth, wrap-around and emptying', () => {
  const seed = Date.now() >>> 0;
  const random = new SeededRandom(seed);
  const fifo = new Fifo<number>();
  const model: number[] = [];
  let next = 0;
  for (let step = 0; step < 20_000; step++) {
    const action = random.int(10);
    if (action < 5) {
      // Bursts past the kept capacity exercise growth and the release of a large empty array.
      const burst = random.int(3) === 0 ? random.int(200) : 1;
      for (let i = 0; i < burst; i++) {
        fifo.push(next);
        model.push(next++);
      }
    } else if (action < 9) {
      assert.equal(fifo.shift(), model.shift(), `seed ${seed} step ${step}`);
    } else if (action === 9 && random.int(20) === 0) {
      assert.deepEqual(fifo.drain(), model.splice(0), `seed ${seed} step ${step}`);
    }
    assert.equal(fifo.length, model.length, `seed ${seed} step ${step}`);
    assert.equal(fifo.peek(), model[0], `seed ${seed} step ${step}`);
  }
});
