/**
 * Live fuzzing during a chaos run, from a seed: random and mutated RESP
 * requests at the client ports, malformed Raft frames at the Raft ports. Each
 * input goes on a fresh connection, which is closed after a reply, a close by
 * the node, or a short wait.
 *
 * Raft inputs are malformed on purpose (unknown types, wrong payload sizes,
 * oversized lengths, huge entry counts, truncation): Raft trusts its peers, so
 * a well-formed frame from a stranger would be a Byzantine peer, not a fuzz
 * input. RESP inputs never name the workload's keys (see workloadKey).
 */
import * as net from 'node:net';
import { SeededRandom } from '../../src/util/prng';

const INPUT_WAIT_MS = 100;
const NO_TARGET_WAIT_MS = 100;
const COMMANDS = ['GET', 'SET', 'DEL', 'PING', 'INFO', 'QUIT', 'COMMAND', 'HELLO', 'XYZ'];
const HUGE_NUMBERS = ['2147483648', '4294967295', '99999999999', '-1', '-2147483648', '1e9', ''];

export interface FuzzTarget {
  host: string;
  client_port: number;
  raft_port: number;
}

export class LiveFuzzer {
  inputs = 0;
  resp_inputs = 0;
  raft_inputs = 0;
  private running = true;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly targets: () => FuzzTarget[],
    private readonly seed: number,
    private readonly concurrency = 10,
  ) {}

  start(): void {
    this.loops = Array.from({ length: this.concurrency }, (_, i) => this.loop(i));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private async loop(index: number): Promise<void> {
    const rng = new SeededRandom((this.seed * 31 + index + 1) >>> 0);
    while (this.running) {
      const targets = this.targets();
      const target = targets[rng.int(targets.length)];
      if (target === undefined) {
        // Every node is down (kill_all, power_loss_all): wait for one, do not give up.
        await new Promise((resolve) => setTimeout(resolve, NO_TARGET_WAIT_MS));
        continue;
      }
      const raft = rng.float() < 0.4;
      const input = raft ? raftInput(rng) : respInput(rng);
      await send(target.host, raft ? target.raft_port : target.client_port, input);
      this.inputs++;
      if (raft) this.raft_inputs++;
      else this.resp_inputs++;
    }
  }
}

function send(host: string, port: number, input: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, INPUT_WAIT_MS * 4);
    socket.on('connect', () => {
      socket.write(input);
      setTimeout(done, INPUT_WAIT_MS);
    });
    socket.on('data', done);
    socket.on('error', done);
    socket.on('close', done);
  });
}

function randomBytes(rng: SeededRandom, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = rng.int(256);
  return bytes;
}

function pick<T>(rng: SeededRandom, items: readonly T[]): T {
  return items[rng.int(items.length)] as T;
}

/** A RESP request: random bytes, or a command built from parts and then mutated. */
export function respInput(rng: SeededRandom): Buffer {
  if (rng.float() < 0.15) return randomBytes(rng, 1 + rng.int(300));
  const words = [pick(rng, COMMANDS)];
  const extra = rng.int(5);
  for (let i = 0; i < extra; i++) words.push(`fz:${rng.int(1000)}`);
  let text = `*${words.length}\r\n${words.map((w) => `$${w.length}\r\n${w}\r\n`).join('')}`;
  switch (rng.int(6)) {
    case 0: // a huge or negative count or length
      text = text.replace(/[*$]\d+/, (m) => `${m[0]}${pick(rng, HUGE_NUMBERS)}`);
      break;
    case 1: // truncated
      text = text.slice(0, rng.int(text.length));
      break;
    case 2: // missing CR or LF
      text = text.replace(rng.float() < 0.5 ? '\r' : '\n', '');
      break;
    case 3: // an inline command with a very long word
      text = `${pick(rng, COMMANDS)} fz:${'x'.repeat(rng.int(70_000))}\r\n`;
      break;
    case 4: // nested array type where a bulk string belongs
      text = text.replace('$', '*');
      break;
    default:
      break; // well-formed: the node must answer it
  }
  const bytes = Buffer.from(text, 'latin1');
  // Flip a few bytes, but never inside the words: the keys stay "fz:".
  const flips = rng.int(3);
  for (let i = 0; i < flips && bytes.length > 0; i++) {
    const at = rng.int(Math.min(bytes.length, 6));
    bytes[at] = rng.int(256);
  }
  return bytes;
}

/** A malformed Raft frame: [type u32][payload_size u32][payload], wrong in one way. */
export function raftInput(rng: SeededRandom): Buffer {
  const header = Buffer.alloc(8);
  const kind = rng.int(5);
  let payload: Buffer;
  if (kind === 0) {
    header.writeUInt32LE(pick(rng, [0, 8, 9, 255, 0xffffffff]), 0); // unknown type
    payload = randomBytes(rng, rng.int(40));
  } else if (kind === 1) {
    header.writeUInt32LE(1 + rng.int(7), 0); // known type, payload of a wrong size
    payload = randomBytes(rng, pick(rng, [0, 1, 4, 15, 17, 20, 22, 27]));
  } else if (kind === 2) {
    header.writeUInt32LE(1 + rng.int(7), 0); // declared length far beyond any limit
    header.writeUInt32LE(pick(rng, [0x7fffffff, 0xffffffff, 0x10000000]), 4);
    return Buffer.concat([header, randomBytes(rng, rng.int(64))]);
  } else if (kind === 3) {
    header.writeUInt32LE(3, 0); // AppendEntries with a huge entry count and no entries
    payload = Buffer.alloc(28);
    payload.writeUInt32LE(pick(rng, [0xffffffff, 0x7fffffff, 1_000_000]), 24);
  } else {
    header.writeUInt32LE(3, 0); // AppendEntries whose one entry claims more data than it has
    payload = Buffer.alloc(28 + 8 + 4);
    payload.writeUInt32LE(1, 24);
    payload.writeUInt32LE(0xfffffff0, 32);
  }
  if (kind !== 2) header.writeUInt32LE(payload.length, 4);
  const frame = Buffer.concat([header, payload]);
  // Sometimes cut short: the peer must wait for the rest, then see the connection close.
  return rng.float() < 0.2 ? frame.subarray(0, rng.int(frame.length)) : frame;
}
