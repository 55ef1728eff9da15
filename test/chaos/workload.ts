/**
 * Chaos clients: each a KvClient (its own connections) starting at a
 * different node, issuing random GET/SET/DEL over a small key set with unique
 * values and a per-operation deadline. Outcomes are classified as the client
 * library does: ok, fail (certainly not executed: left out of the history),
 * unknown (a write that may have happened: its return time is +infinity and
 * the client continues as a new process id, as Jepsen's clients do).
 * Besides, one reader per node stays on that node and only reads: a node that
 * wrongly believes it leads (or serves reads it may not) shows it to them
 * while the other clients' writes go to the real leader.
 */
import { KvClient } from '../../src/client';
import { SeededRandom } from '../../src/util/prng';
import type { HistoryOperation, KvInput, KvOutput } from '../sim/linearizability';
import { callKv } from '../support/kv_history';

/** Between a pinned reader's reads. */
const READER_PAUSE_MS = 20;

/**
 * The checked keys; distinctive, so that the fuzzer's random commands (which use other keys) cannot
 * plausibly touch them.
 */
export function workloadKey(index: number): string {
  return `chaos:key:${index}`;
}

export interface WorkloadOptions {
  clients: number;
  /** Read-only clients per node, each connected to that node only. */
  readers_per_node: number;
  keys: number;
  call_timeout_ms: number;
  seed: number;
  /** Client addresses of every node. */
  addresses: string[];
  now: () => number;
}

export interface WorkloadCounts {
  ok: number;
  fail: number;
  unknown: number;
  /** Failures by error code (ENOLEADER, ETIMEOUT, ...). */
  fail_codes: Map<string, number>;
  /** The last message of each failure code, to tell what went wrong. */
  fail_samples: Map<string, string>;
}

export class Workload {
  readonly history: HistoryOperation[] = [];
  readonly counts: WorkloadCounts = {
    ok: 0,
    fail: 0,
    unknown: 0,
    fail_codes: new Map(),
    fail_samples: new Map(),
  };
  private running = true;
  private next_process_id: number;
  private loops: Promise<void>[] = [];

  constructor(private readonly options: WorkloadOptions) {
    this.next_process_id = options.clients + options.readers_per_node * options.addresses.length;
  }

  start(): void {
    const { clients, readers_per_node, addresses } = this.options;
    this.loops = Array.from({ length: clients }, (_, i) => this.clientLoop(i, false));
    for (let i = 0; i < readers_per_node * addresses.length; i++)
      this.loops.push(this.clientLoop(clients + i, true));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private async clientLoop(client_index: number, reader: boolean): Promise<void> {
    const { addresses } = this.options;
    // Each client starts at its own node, so the connections spread over the whole cluster.
    const rotated = addresses.map((_, i) => addresses[(client_index + i) % addresses.length]!);
    const client = new KvClient({
      nodes: reader ? rotated.slice(0, 1) : rotated,
      call_timeout_ms: this.options.call_timeout_ms,
    });
    const rng = new SeededRandom((this.options.seed * 7919 + client_index) >>> 0);
    let process_id = client_index;
    let counter = 0;
    try {
      while (this.running) {
        const input = reader
          ? { kind: 'get' as const, key: workloadKey(rng.int(this.options.keys)) }
          : this.nextInput(rng, process_id, ++counter);
        const call_time = this.options.now();
        const output = await this.execute(client, input);
        // A node answering reads from memory (rightly or not) would flood the history otherwise.
        if (reader) await new Promise((resolve) => setTimeout(resolve, READER_PAUSE_MS));
        if (output === null) continue;
        this.history.push({
          client_id: process_id,
          input,
          output,
          call_time,
          return_time: output.kind === 'unknown' ? Infinity : this.options.now(),
        });
        if (output.kind === 'unknown') process_id = this.next_process_id++;
      }
    } finally {
      await client.close();
    }
  }

  private nextInput(rng: SeededRandom, process_id: number, counter: number): KvInput {
    const key = workloadKey(rng.int(this.options.keys));
    const roll = rng.float();
    if (roll < 0.5) return { kind: 'get', key };
    if (roll < 0.9) return { kind: 'set', key, value: `p${process_id}-${counter}` };
    return { kind: 'del', key };
  }

  /** The operation's output for the history; null when it certainly did not happen. */
  private async execute(client: KvClient, input: KvInput): Promise<KvOutput | null> {
    const outcome = await callKv(client, input);
    if (outcome.kind !== 'failed') {
      this.counts[outcome.kind]++;
      return outcome.output;
    }
    const { error } = outcome;
    this.counts.fail++;
    this.counts.fail_codes.set(error.code, (this.counts.fail_codes.get(error.code) ?? 0) + 1);
    this.counts.fail_samples.set(error.code, error.message.slice(0, 160));
    return null;
  }
}
