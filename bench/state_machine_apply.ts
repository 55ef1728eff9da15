/**
 * CPU cost of KvStateMachine.apply for SETs that overwrite keys of a full key space, as under
 * `npm run bench` (100,000 keys, 16-byte values). CPU time of this process (GC threads included)
 * per op, median and best of 5 rounds: the machine may be shared, so wall time would mislead.
 * Run: npm run build && node dist/bench/state_machine_apply.js
 */
import { benchKey } from './compare/load_spec';
import { encodeCommand } from '../src/kv/command_codec';
import { KvStateMachine } from '../src/kv/state_machine';

const KEY_SPACE = 100_000;
const OPS = 600_000;
const ROUNDS = 5;
const ENTRIES = 4096;

function setEntry(key_number: number): Buffer {
  const key = Buffer.from(benchKey(key_number), 'latin1');
  return encodeCommand({ op: 'set', key, words: [Buffer.alloc(16, 0x78)] });
}

function round(entries: readonly Buffer[]): number {
  const machine = new KvStateMachine();
  let index = 0;
  for (let i = 0; i < KEY_SPACE; i++) machine.apply(++index, setEntry(i));
  const started = process.cpuUsage();
  for (let i = 0; i < OPS; i++) machine.apply(++index, entries[i % ENTRIES]!);
  const used = process.cpuUsage(started);
  return (used.user + used.system) / OPS;
}

const entries = Array.from({ length: ENTRIES }, () =>
  setEntry(Math.floor(Math.random() * KEY_SPACE)),
);
const us_per_op = Array.from({ length: ROUNDS }, () => round(entries)).sort((a, b) => a - b);
process.stdout.write(
  `apply SET over a full key space of ${KEY_SPACE}: median ${us_per_op[2]!.toFixed(2)} µs,` +
    ` best ${us_per_op[0]!.toFixed(2)} µs per op\n`,
);
