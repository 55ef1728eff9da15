/**
 * The chaos nemesis: from a seeded schedule, one fault at a time — a real
 * network partition (iptables), kill -9, SIGSTOP, a graceful SIGTERM
 * (leadership transfer), slow fsyncs, or a power loss (kill -9, then every
 * file cut back to what its fdatasyncs made durable) — held for a while, then
 * healed. The schedule only
 * depends on the seed and on which node leads when a fault starts.
 */
import type { TestFault } from '../../src/config/config';
import type { SeededRandom } from '../../src/util/prng';
import type { ChaosCluster } from './chaos_cluster';
import type { NetFaults } from './netfault';

export const FAULT_KINDS = [
  'partition_leader',
  'partition_split',
  'partition_bridge',
  'partition_ring',
  'one_way_leader_out',
  'one_way_leader_in',
  'cut_clients',
  'kill_leader',
  'kill_minority',
  'kill_majority',
  'kill_all',
  'pause_leader',
  'pause_minority',
  'pause_isolate_leader',
  'sigterm_leader',
  'slow_disk',
  'power_loss_majority',
  'power_loss_all',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * The faults that expose each test-only safety breaker quickest: a run with `--test-faults` and
 * no `--faults` uses these.
 */
export const EXPOSING_KINDS: Record<TestFault, readonly FaultKind[]> = {
  serve_local_reads: ['partition_leader', 'partition_split'],
  ack_before_fsync: ['power_loss_all', 'power_loss_majority'],
  skip_read_index: ['pause_isolate_leader'],
  stale_leader_reads: ['partition_leader', 'one_way_leader_out'],
  // No chaos fault deletes a data directory: test/integration/lost_data_dir.test.ts exposes it.
  skip_incarnation_check: [],
};

export const PARTITION_KINDS: readonly FaultKind[] = FAULT_KINDS.filter(
  (kind) => kind.startsWith('partition') || kind.startsWith('one_way') || kind === 'cut_clients',
);

export interface FaultRecord {
  kind: FaultKind;
  /** ms since the run started. */
  start_ms: number;
  end_ms: number;
  detail: string;
}

export interface NemesisOptions {
  kinds: readonly FaultKind[];
  /** How long a fault is held, and the calm between faults. */
  hold_ms: [number, number];
  calm_ms: [number, number];
}

function pickSome(rng: SeededRandom, items: number[], count: number): number[] {
  const pool = [...items];
  const chosen: number[] = [];
  while (chosen.length < count && pool.length > 0)
    chosen.push(pool.splice(rng.int(pool.length), 1)[0]!);
  return chosen;
}

export class Nemesis {
  readonly faults: FaultRecord[] = [];

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly net: NetFaults,
    private readonly rng: SeededRandom,
    private readonly options: NemesisOptions,
    private readonly now: () => number,
    private readonly log: (line: string) => void,
  ) {}

  /** Runs faults until `until()` says stop; always leaves everything healed. */
  async run(until: () => boolean): Promise<void> {
    while (!until()) {
      await sleep(this.between(this.options.calm_ms));
      if (until()) break;
      // On 3 nodes a ring is every link: no cut at all, so a bridge stands in for it.
      let kind = this.options.kinds[this.rng.int(this.options.kinds.length)]!;
      if (kind === 'partition_ring' && this.cluster.nodes.length < 4) kind = 'partition_bridge';
      const start_ms = this.now();
      const detail = await this.inject(kind);
      await sleep(this.between(this.options.hold_ms));
      await this.healAll();
      this.faults.push({ kind, start_ms, end_ms: this.now(), detail });
      this.log(`fault ${kind} ${detail} (${Math.round(this.now() - start_ms)} ms)`);
    }
    await this.healAll();
  }

  /** Network whole, disks fast, every process running and resumed. */
  async healAll(): Promise<void> {
    this.net.heal();
    for (const node of this.cluster.nodes) {
      this.cluster.setSlowDisk(node.index, null);
      this.cluster.resume(node.index);
      if (node.process === null) this.cluster.start(node.index);
    }
  }

  private between([low, high]: [number, number]): number {
    return low + this.rng.int(Math.max(1, high - low));
  }

  private async inject(kind: FaultKind): Promise<string> {
    const all = this.cluster.nodes.map((n) => n.index);
    const n = all.length;
    const leader = (await this.cluster.leader()) ?? this.rng.int(n);
    const others = all.filter((i) => i !== leader);
    const minority = Math.floor((n - 1) / 2);
    const name = (indexes: number[]): string => indexes.map((i) => i + 1).join(',');
    const ip = (i: number): string => this.cluster.nodes[i]!.ip;
    switch (kind) {
      case 'partition_leader':
        for (const other of others) this.net.cut(ip(leader), ip(other));
        return `isolated ${leader + 1}`;
      case 'partition_split': {
        const side = [leader, ...pickSome(this.rng, others, minority - 1)];
        const rest = all.filter((i) => !side.includes(i));
        for (const a of side) for (const b of rest) this.net.cut(ip(a), ip(b));
        return `${name(side)} | ${name(rest)}`;
      }
      case 'partition_bridge': {
        // The bridge sees both halves; the halves do not see each other.
        const order = pickSome(this.rng, all, n);
        const bridge = order[0]!;
        const left = order.slice(1, 1 + Math.floor((n - 1) / 2));
        const right = order.slice(1 + left.length);
        for (const a of left) for (const b of right) this.net.cut(ip(a), ip(b));
        return `${name(left)} <${bridge + 1}> ${name(right)}`;
      }
      case 'partition_ring': {
        const order = pickSome(this.rng, all, n);
        for (let i = 0; i < n; i++) {
          for (let j = i + 1; j < n; j++) {
            const distance = Math.min(j - i, n - (j - i));
            if (distance > 1) this.net.cut(ip(order[i]!), ip(order[j]!));
          }
        }
        return `ring ${name(order)}`;
      }
      case 'one_way_leader_out':
        for (const other of others) this.net.dropOneWay(ip(leader), ip(other));
        return `nobody hears ${leader + 1}`;
      case 'one_way_leader_in':
        for (const other of others) this.net.dropOneWay(ip(other), ip(leader));
        return `${leader + 1} hears nobody`;
      case 'cut_clients': {
        const cut = pickSome(this.rng, all, 1 + this.rng.int(Math.max(1, minority)));
        for (const i of cut) this.net.cutClients(ip(i), this.cluster.nodes[i]!.client_port);
        return `clients cut from ${name(cut)}`;
      }
      case 'pause_isolate_leader':
        return this.pauseThenIsolate(leader, others);
      case 'slow_disk':
      case 'power_loss_majority':
      case 'power_loss_all':
        return this.injectDiskFault(kind, leader, all);
      default:
        return this.injectProcessFault(kind, leader, others, minority);
    }
  }

  /**
   * A leader paused past an election (a GC pause, a stalled VM) wakes up cut off from its peers
   * but not from its clients: until CheckQuorum deposes it, it still believes it leads while the
   * new leader commits writes. Only reads confirmed by a heartbeat round keep it honest. Cut
   * before it is paused, or it would read the new leader's messages that its socket buffered
   * meanwhile and step down at once; the pinned readers stay with it.
   */
  private async pauseThenIsolate(leader: number, others: number[]): Promise<string> {
    const ip = (i: number): string => this.cluster.nodes[i]!.ip;
    for (const other of others) this.net.cut(ip(leader), ip(other));
    this.cluster.pause(leader);
    const paused_ms = this.between([2000, 3500]);
    await sleep(paused_ms);
    this.cluster.resume(leader);
    return `${leader + 1} isolated, paused ${paused_ms} ms, resumed`;
  }

  /**
   * slow_disk: some nodes' fsyncs take longer for the hold (a loaded or failing disk; a long one
   * deposes a leader). power_loss_*: for a moment the followers' disks are slow (so acknowledged
   * writes may be unsynced there, and only there), then the victims lose power: kill -9, every
   * file cut back to its last fdatasync (maybe torn). After power_loss_all the old leader comes
   * back last, at the heal: the others elect from what their disks kept.
   */
  private async injectDiskFault(kind: FaultKind, leader: number, all: number[]): Promise<string> {
    const name = (indexes: number[]): string => indexes.map((i) => i + 1).join(',');
    const ranges: [number, number][] = [
      [5, 50],
      [50, 250],
      [300, 1200],
    ];
    if (kind === 'slow_disk') {
      const victims = pickSome(this.rng, all, 1 + this.rng.int(all.length));
      const range = ranges[this.rng.int(ranges.length)]!;
      for (const victim of victims) this.cluster.setSlowDisk(victim, range);
      return `${name(victims)} fsync ${range[0]}-${range[1]} ms`;
    }
    const majority = Math.floor(all.length / 2) + 1;
    const victims = kind === 'power_loss_all' ? all : pickSome(this.rng, all, majority);
    for (const index of all) if (index !== leader) this.cluster.setSlowDisk(index, [50, 300]);
    await sleep(this.between([400, 1200]));
    await Promise.all(victims.map((victim) => this.cluster.stop(victim, 'SIGKILL')));
    let dropped = 0;
    for (const index of all) this.cluster.setSlowDisk(index, null);
    for (const victim of victims) dropped += this.cluster.losePower(victim, this.rng);
    if (kind === 'power_loss_all')
      for (const index of all) if (index !== leader) this.cluster.start(index);
    return `${name(victims)}, ${dropped} unsynced bytes lost`;
  }

  private async injectProcessFault(
    kind: FaultKind,
    leader: number,
    others: number[],
    minority: number,
  ): Promise<string> {
    const all = [leader, ...others];
    const name = (indexes: number[]): string => indexes.map((i) => i + 1).join(',');
    let victims: number[];
    switch (kind) {
      case 'kill_leader':
      case 'pause_leader':
      case 'sigterm_leader':
        victims = [leader];
        break;
      case 'kill_minority':
      case 'pause_minority':
        victims = pickSome(this.rng, all, Math.max(1, minority));
        break;
      case 'kill_majority':
        victims = pickSome(this.rng, all, minority + 1);
        break;
      default:
        victims = all;
    }
    for (const victim of victims) {
      if (kind.startsWith('pause')) this.cluster.pause(victim);
      else await this.cluster.stop(victim, kind === 'sigterm_leader' ? 'SIGTERM' : 'SIGKILL');
    }
    return name(victims);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
