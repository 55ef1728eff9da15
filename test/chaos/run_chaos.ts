/**
 * One chaos run: a real cluster, clients, the nemesis for `time_s`, then
 * heal and check — a write commits within a bound, every node converges to
 * the same state (INFO digest), the history is linearizable (the simulator's
 * checker, per key), no node exited or logged an internal error except by
 * the nemesis's hand.
 */
import { readFileSync } from 'node:fs';
import type { ClientRedirect, TestFault } from '../../src/config/config';
import { KvClient } from '../../src/client';
import { SeededRandom } from '../../src/util/prng';
import { checkLinearizable, type HistoryOperation } from '../sim/linearizability';
import { ChaosCluster } from './chaos_cluster';
import { FAULT_KINDS, type FaultKind, type FaultRecord, Nemesis } from './nemesis';
import { LiveFuzzer } from './fuzzer';
import { NetFaults } from './netfault';
import { Workload, type WorkloadCounts, workloadKey } from './workload';

export interface ChaosOptions {
  time_s: number;
  seed: number;
  nodes: number;
  mode: ClientRedirect;
  test_faults: readonly TestFault[];
  kinds: readonly FaultKind[];
  clients: number;
  /** Read-only clients pinned to each node (see Workload). */
  readers_per_node: number;
  keys: number;
  /** Live fuzzing of both ports during the run. */
  fuzz: boolean;
  /** Keep the node logs and data even when the run passes. */
  keep_dir?: boolean;
  log: (line: string) => void;
}

export const CHAOS_DEFAULTS = {
  nodes: 5,
  mode: 'forward' as ClientRedirect,
  clients: 12,
  readers_per_node: 1,
  keys: 8,
  kinds: FAULT_KINDS,
  fuzz: true,
};

/** After healing, a write must commit within this. */
const HEALED_WRITE_BOUND_MS = 10_000;
const CONVERGENCE_BOUND_MS = 20_000;
const CALL_TIMEOUT_MS = 2_500;

export interface ChaosResult {
  seed: number;
  counts: WorkloadCounts;
  ops: number;
  faults: FaultRecord[];
  violations: number;
  /** Failed checks other than linearizability, in words. */
  check_failures: string[];
  violation_text: string | null;
  /** Longest time from a fault's start to the first successful write called after it. */
  longest_unavailable: Unavailability;
  healed_write_ms: number | null;
  fuzz: { inputs: number; resp: number; raft: number } | null;
  /** Largest resident set size seen of any node process, in MiB. */
  rss_max_mib: number;
}

/** The live resources of a run, for the signal and exit handlers to clean up. */
export interface ChaosResources {
  cluster: ChaosCluster | null;
  net: NetFaults | null;
}

export async function runChaos(
  options: ChaosOptions,
  resources: ChaosResources = { cluster: null, net: null },
): Promise<ChaosResult> {
  const started = performance.now();
  const now = (): number => performance.now() - started;
  resources.net = NetFaults.open();
  const cluster = await ChaosCluster.create(options);
  resources.cluster = cluster;
  const log = options.log;
  log(
    `chaos seed ${options.seed}: ${options.nodes} nodes (${options.mode}), ` +
      `${options.clients} clients + ${options.readers_per_node} reader(s) per node, ` +
      `${options.time_s} s, chain ${resources.net.chain}, dir ` +
      cluster.dir +
      (options.test_faults.length > 0 ? `, TEST FAULTS ${options.test_faults.join(',')}` : ''),
  );
  /** Thrown, a violation or a failed check: the node logs are kept. */
  let failed = true;
  try {
    for (const node of cluster.nodes) cluster.start(node.index);
    await pollFor('a first leader', 20_000, async () => (await cluster.leader()) !== null);
    const workload = new Workload({
      clients: options.clients,
      readers_per_node: options.readers_per_node,
      keys: options.keys,
      call_timeout_ms: CALL_TIMEOUT_MS,
      seed: options.seed,
      addresses: cluster.nodes.map((n) => cluster.address(n.index)),
      now,
    });
    workload.start();
    const fuzzer = options.fuzz ? startFuzzer(cluster, options.seed) : null;
    const rss = new RssSampler(cluster);
    const nemesis = new Nemesis(
      cluster,
      resources.net,
      new SeededRandom(options.seed),
      { kinds: options.kinds, hold_ms: [1500, 4000], calm_ms: [800, 2500] },
      now,
      log,
    );
    const end_ms = options.time_s * 1000;
    await nemesis.run(() => now() >= end_ms);
    await fuzzer?.stop();
    rss.stop();
    const result = await finish(options, cluster, workload, nemesis.faults, now);
    result.rss_max_mib = rss.max_mib;
    if (fuzzer !== null)
      result.fuzz = { inputs: fuzzer.inputs, resp: fuzzer.resp_inputs, raft: fuzzer.raft_inputs };
    failed = result.violations > 0 || result.check_failures.length > 0;
    return result;
  } finally {
    resources.net.close();
    resources.net = null;
    const keep = failed || options.keep_dir === true;
    await cluster.destroy(keep);
    if (keep) log(`node logs kept in ${cluster.dir}`);
    resources.cluster = null;
  }
}

async function finish(
  options: ChaosOptions,
  cluster: ChaosCluster,
  workload: Workload,
  faults: FaultRecord[],
  now: () => number,
): Promise<ChaosResult> {
  const check_failures: string[] = [];
  const healed_write_ms = await timeHealedWrite(cluster, options.log);
  if (healed_write_ms === null)
    check_failures.push(`no write committed within ${HEALED_WRITE_BOUND_MS} ms of healing`);
  await workload.stop();
  const unread = await finalReads(cluster, options.keys, workload.history, now);
  if (unread !== null) check_failures.push(unread);
  const { unconverged, diverged } = await convergence(cluster);
  if (unconverged !== null) check_failures.push(unconverged);
  for (const exit of cluster.unexpected_exits) check_failures.push(`unexpected exit: ${exit}`);
  for (const line of cluster.internalErrors().slice(0, 20))
    check_failures.push(`internal error logged: ${line}`);

  const checked = checkLinearizable(workload.history, { step_budget: 200_000_000 });
  if (checked.timed_out) check_failures.push('the linearizability checker ran out of budget');
  const violations = (checked.ok || checked.timed_out ? 0 : 1) + (diverged === null ? 0 : 1);
  const texts = [diverged ?? ''];
  if (checked.failure !== undefined)
    texts.push(
      `not linearizable, key ${checked.failure.key} (seed ${options.seed}):\n` +
        checked.failure.explanation,
    );
  return {
    seed: options.seed,
    counts: workload.counts,
    ops: workload.counts.ok + workload.counts.fail + workload.counts.unknown,
    faults,
    violations,
    check_failures,
    violation_text: violations === 0 ? null : texts.filter((text) => text !== '').join('\n'),
    longest_unavailable: longestUnavailability(faults, workload.history),
    healed_write_ms,
    fuzz: null,
    rss_max_mib: 0,
  };
}

function startFuzzer(cluster: ChaosCluster, seed: number): LiveFuzzer {
  const fuzzer = new LiveFuzzer(
    () =>
      cluster.nodes
        .filter((n) => n.process !== null)
        .map((n) => ({ host: n.ip, client_port: n.client_port, raft_port: n.raft_port })),
    seed,
  );
  fuzzer.start();
  return fuzzer;
}

/** Samples every node's resident set size (Linux /proc) once a second. */
class RssSampler {
  max_mib = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(cluster: ChaosCluster) {
    this.timer = setInterval(() => {
      for (const node of cluster.nodes) {
        const pid = node.process?.pid;
        if (pid === undefined) continue;
        try {
          const status = readFileSync(`/proc/${pid}/status`, 'utf8');
          const kib = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
          this.max_mib = Math.max(this.max_mib, kib / 1024);
        } catch {
          // exited between the check and the read
        }
      }
    }, 1000);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

async function timeHealedWrite(
  cluster: ChaosCluster,
  log: (line: string) => void,
): Promise<number | null> {
  const healed_at = performance.now();
  const client = new KvClient({
    nodes: cluster.nodes.map((n) => cluster.address(n.index)),
    call_timeout_ms: 2000,
  });
  try {
    while (performance.now() - healed_at < HEALED_WRITE_BOUND_MS) {
      try {
        await client.set('chaos:healed', `${Date.now()}`);
        const elapsed_ms = performance.now() - healed_at;
        log(`healed: a write committed after ${Math.round(elapsed_ms)} ms`);
        return elapsed_ms;
      } catch {
        // retried until the bound
      }
    }
    return null;
  } finally {
    await client.close();
  }
}

/** Reads every key once more into the history; null, or why a read failed. */
async function finalReads(
  cluster: ChaosCluster,
  keys: number,
  history: HistoryOperation[],
  now: () => number,
): Promise<string | null> {
  const client = new KvClient({
    nodes: cluster.nodes.map((n) => cluster.address(n.index)),
    call_timeout_ms: 5000,
  });
  try {
    for (let k = 0; k < keys; k++) {
      const call_time = now();
      const words = await client.get(workloadKey(k));
      history.push({
        client_id: -1,
        input: { kind: 'get', key: workloadKey(k) },
        output: { kind: 'get', value: words === null ? null : words.join(' ') },
        call_time,
        return_time: now(),
      });
    }
    return null;
  } catch (error) {
    return `a final read after healing failed: ${(error as Error).message}`;
  } finally {
    await client.close();
  }
}

/**
 * Whether every node shows the same applied index and state digest within the bound
 * (`unconverged`: why not), and whether two nodes ever showed different digests at the same applied
 * index (`diverged`): their state machines applied different entries, a safety violation.
 */
async function convergence(
  cluster: ChaosCluster,
): Promise<{ unconverged: string | null; diverged: string | null }> {
  const deadline = performance.now() + CONVERGENCE_BOUND_MS;
  let last = '';
  while (performance.now() < deadline) {
    const digests = await Promise.all(cluster.nodes.map((n) => cluster.info(n.index, 'digest')));
    const lines = digests.map((d) =>
      d === null ? 'no answer' : `${d.last_applied} ${d.state_digest}`,
    );
    last = lines.map((line, i) => `node ${i + 1}: ${line}`).join('; ');
    const by_applied = new Map<string, string>();
    for (const digest of digests) {
      if (digest === null) continue;
      const seen = by_applied.get(digest.last_applied ?? '');
      if (seen !== undefined && seen !== digest.state_digest) {
        const diverged = `STATE DIVERGED at applied index ${digest.last_applied}: ${last}`;
        return { unconverged: null, diverged };
      }
      by_applied.set(digest.last_applied ?? '', digest.state_digest ?? '');
    }
    if (digests.every((d) => d !== null) && new Set(lines).size === 1)
      return { unconverged: null, diverged: null };
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return {
    unconverged: `nodes did not converge within ${CONVERGENCE_BOUND_MS} ms: ${last}`,
    diverged: null,
  };
}

export interface Unavailability {
  /** From the fault's start to the first successful write called after it. */
  ms: number;
  /** The part of it after the fault was healed. */
  after_heal_ms: number;
  fault: string;
  /** Later faults that began before that write: the window may be theirs as much. */
  later_faults: string[];
}

function longestUnavailability(faults: FaultRecord[], history: HistoryOperation[]): Unavailability {
  const ok_writes = history
    .filter((op) => op.input.kind !== 'get' && op.output.kind !== 'unknown')
    .sort((a, b) => a.call_time - b.call_time);
  let longest: Unavailability = { ms: 0, after_heal_ms: 0, fault: 'none', later_faults: [] };
  for (const fault of faults) {
    // First successful write called at or after the fault began (binary search on call_time).
    let low = 0;
    let high = ok_writes.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (ok_writes[mid]!.call_time < fault.start_ms) low = mid + 1;
      else high = mid;
    }
    let first_return = Infinity;
    for (let i = low; i < Math.min(ok_writes.length, low + 64); i++)
      first_return = Math.min(first_return, ok_writes[i]!.return_time);
    const ms = first_return - fault.start_ms;
    if (Number.isFinite(ms) && ms > longest.ms) {
      longest = {
        ms,
        after_heal_ms: Math.max(0, first_return - fault.end_ms),
        fault: `${fault.kind} ${fault.detail} at ${Math.round(fault.start_ms)} ms`,
        later_faults: faults
          .filter((later) => later.start_ms > fault.start_ms && later.start_ms < first_return)
          .map((later) => later.kind),
      };
    }
  }
  return longest;
}

async function pollFor(
  what: string,
  timeout_ms: number,
  probe: () => Promise<boolean>,
): Promise<void> {
  const deadline = performance.now() + timeout_ms;
  while (!(await probe())) {
    if (performance.now() >= deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
