/**
 * `npm run bench:throughput [-- --ops N --seq-ops N --callers N --value-bytes N]`:
 * latency and throughput of a real 3-node cluster on this machine.
 *
 * For the leader and then for a follower (which forwards every request to the
 * leader), it measures SET and GET: one client issuing one request at a time;
 * one KvClient shared by `callers` concurrent callers (pipelined on one
 * connection); and four KvClients with `callers` callers each. The leader's
 * and followers' INFO wal_fsyncs before and after every SET run show how many
 * writes share one fsync (group commit).
 *
 * `--profile-dir DIR` instead starts node 1 under `node --cpu-prof`, makes it
 * the leader, runs only the SET runs at it and stops it with SIGTERM so that
 * the .cpuprofile lands in DIR.
 *
 * `--metrics on` gives every node a `metrics_port` and scrapes all three every
 * 5 s during the runs, to measure what metrics cost (compare with `off`).
 *
 * The bench client runs on the same machine as the three nodes, so it
 * competes with them for CPU. Figures go in notes, never in tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { KvClient } from '../src/client';
import { pollUntil, REPO_ROOT, TestCluster } from '../test/integration/cluster_harness';
import { freePortPairs } from '../test/support/ports';

interface Options {
  ops: number;
  seq_ops: number;
  callers: number;
  value_bytes: number;
  profile_dir: string | null;
  metrics: boolean;
}

type Operation = 'SET' | 'GET';

interface RunSpec {
  operation: Operation;
  clients: number;
  callers_per_client: number;
  ops: number;
}

interface RunResult {
  target: string;
  spec: RunSpec;
  elapsed_ms: number;
  /** Ascending. */
  latencies_ms: number[];
  errors: number;
  leader_fsyncs: number;
  follower_fsyncs: number;
  /**
   * CPU used during the timed part, as % of one core: this bench process, the leader, each follower
   * (null where unreadable).
   */
  cpu_percent: { bench: number; leader: number | null; followers: Array<number | null> };
}

const KEY_SPACE = 10_000;
/** With --metrics on: how often each node's /metrics is fetched (Prometheus defaults to 15 s). */
const SCRAPE_MS = 5_000;

function scrapeAll(ports: number[]): void {
  for (const port of ports) {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics' }, (response) => response.resume())
      .on('error', () => undefined);
  }
}

function parseOptions(argv: string[]): Options {
  const options: Options = {
    ops: 20_000,
    seq_ops: 2_000,
    callers: 50,
    value_bytes: 32,
    profile_dir: null,
    metrics: false,
  };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    const text = argv[i + 1] ?? '';
    const value = Number(text);
    const count = Number.isInteger(value) && value > 0;
    if (flag === '--ops' && count) options.ops = value;
    else if (flag === '--seq-ops' && count) options.seq_ops = value;
    else if (flag === '--callers' && count) options.callers = value;
    else if (flag === '--value-bytes' && count) options.value_bytes = value;
    else if (flag === '--profile-dir' && text !== '') options.profile_dir = text;
    else if (flag === '--metrics' && (text === 'on' || text === 'off'))
      options.metrics = text === 'on';
    else
      throw new Error(
        'usage: throughput [--ops N] [--seq-ops N] [--callers N] [--value-bytes N] ' +
          `[--profile-dir DIR] [--metrics on|off]; bad argument '${flag ?? ''}'`,
      );
  }
  return options;
}

async function walFsyncs(cluster: TestCluster, index: number): Promise<number> {
  const info = await cluster.info(index);
  const value = Number(info?.wal_fsyncs);
  if (!Number.isFinite(value)) throw new Error(`node ${index + 1} gave no wal_fsyncs in INFO`);
  return value;
}

/** user+system CPU ms of a process from /proc (Linux); null elsewhere or when it is gone. */
function processCpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15, in clock
    // ticks (100 Hz on Linux).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return null;
  }
}

async function run(
  cluster: TestCluster,
  pids: ReadonlyMap<number, number>,
  leader: number,
  target: number,
  spec: RunSpec,
  value: string,
): Promise<RunResult> {
  const followers = cluster.nodes.map((n) => n.index).filter((i) => i !== leader);
  const clients = Array.from(
    { length: spec.clients },
    () => new KvClient({ nodes: [cluster.address(target)], call_timeout_ms: 30_000 }),
  );
  try {
    // Open every connection before the clock starts.
    await Promise.all(clients.map((client) => client.ping()));
    const leader_fsyncs_before = await walFsyncs(cluster, leader);
    const follower_fsyncs_before = await Promise.all(followers.map((i) => walFsyncs(cluster, i)));

    const latencies_ms: number[] = [];
    let errors = 0;
    let next = 0;
    const caller = async (client: KvClient): Promise<void> => {
      while (next < spec.ops) {
        const key = `bench:${next % KEY_SPACE}`;
        next += 1;
        const started_ms = performance.now();
        try {
          if (spec.operation === 'SET') await client.set(key, value);
          else await client.get(key);
          latencies_ms.push(performance.now() - started_ms);
        } catch {
          errors += 1;
        }
      }
    };
    const cpu_before = {
      bench: process.cpuUsage(),
      leader: processCpuMs(pids.get(leader)),
      followers: followers.map((i) => processCpuMs(pids.get(i))),
    };
    const started_ms = performance.now();
    await Promise.all(
      clients.flatMap((client) =>
        Array.from({ length: spec.callers_per_client }, () => caller(client)),
      ),
    );
    const elapsed_ms = performance.now() - started_ms;
    const bench_cpu = process.cpuUsage(cpu_before.bench);
    const percentOf = (before: number | null, after: number | null): number | null =>
      before === null || after === null ? null : ((after - before) / elapsed_ms) * 100;
    const cpu_percent = {
      bench: ((bench_cpu.user + bench_cpu.system) / 1000 / elapsed_ms) * 100,
      leader: percentOf(cpu_before.leader, processCpuMs(pids.get(leader))),
      followers: followers.map((i, k) =>
        percentOf(cpu_before.followers[k] ?? null, processCpuMs(pids.get(i))),
      ),
    };

    // Followers persist what the leader already acknowledged a moment later; let them finish before
    // counting.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const leader_fsyncs = (await walFsyncs(cluster, leader)) - leader_fsyncs_before;
    const follower_fsyncs_after = await Promise.all(followers.map((i) => walFsyncs(cluster, i)));
    const follower_fsyncs =
      follower_fsyncs_after.reduce(
        (sum, after, k) => sum + after - (follower_fsyncs_before[k] ?? 0),
        0,
      ) / followers.length;
    latencies_ms.sort((a, b) => a - b);
    return {
      target: target === leader ? 'leader' : 'follower',
      spec,
      elapsed_ms,
      latencies_ms,
      errors,
      leader_fsyncs,
      follower_fsyncs,
      cpu_percent,
    };
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
}

/** Nearest-rank percentile of an ascending array. */
function percentile(sorted: readonly number[], fraction: number): number {
  return (
    sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1))] ?? 0
  );
}

const COLUMNS: Array<[string, number]> = [
  ['target', 8],
  ['op', 3],
  ['clients x callers', 17],
  ['ops', 6],
  ['ops/s', 8],
  ['p50 ms', 7],
  ['p99 ms', 7],
  ['mean ms', 7],
  ['errors', 6],
  ['leader fsyncs', 13],
  ['writes/fsync', 12],
  ['follower fsyncs', 15],
  ['cpu% bench/L/F/F', 16],
];

function row(cells: string[]): string {
  return cells
    .map((cell, i) =>
      i < 3 ? cell.padEnd(COLUMNS[i]?.[1] ?? 0) : cell.padStart(COLUMNS[i]?.[1] ?? 0),
    )
    .join('  ');
}

function formatResult(r: RunResult): string {
  const ok = r.latencies_ms.length;
  const mean = ok === 0 ? 0 : r.latencies_ms.reduce((sum, x) => sum + x, 0) / ok;
  const is_set = r.spec.operation === 'SET';
  return row([
    r.target,
    r.spec.operation,
    `${r.spec.clients} x ${r.spec.callers_per_client}`,
    String(r.spec.ops),
    ((ok / r.elapsed_ms) * 1000).toFixed(0),
    percentile(r.latencies_ms, 0.5).toFixed(2),
    percentile(r.latencies_ms, 0.99).toFixed(2),
    mean.toFixed(2),
    String(r.errors),
    String(r.leader_fsyncs),
    is_set && r.leader_fsyncs > 0 ? (ok / r.leader_fsyncs).toFixed(1) : '-',
    r.follower_fsyncs.toFixed(0),
    [r.cpu_percent.bench, r.cpu_percent.leader, ...r.cpu_percent.followers]
      .map((p) => (p === null ? '?' : p.toFixed(0)))
      .join('/'),
  ]);
}

function specs(options: Options): RunSpec[] {
  const list: RunSpec[] = [];
  for (const operation of ['SET', 'GET'] as const) {
    list.push({ operation, clients: 1, callers_per_client: 1, ops: options.seq_ops });
    list.push({ operation, clients: 1, callers_per_client: options.callers, ops: options.ops });
    list.push({ operation, clients: 4, callers_per_client: options.callers, ops: options.ops });
  }
  return list;
}

/**
 * Starts node 1 under the CPU profiler (this process owns it) and has it lead, by killing other
 * leaders.
 */
async function startProfiledLeader(
  cluster: TestCluster,
  profile_dir: string,
): Promise<ChildProcess> {
  const node = cluster.nodes[0]!;
  const main_js = join(REPO_ROOT, 'dist', 'src', 'main.js');
  const child = spawn(
    process.execPath,
    ['--cpu-prof', '--cpu-prof-dir', profile_dir, main_js, '--config_path', node.config_path],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  child.stderr?.on('data', (chunk: Buffer) => {
    // Shown by cluster.logs() on failure
    node.stderr = (node.stderr + chunk.toString()).slice(-100_000);
  });
  for (const other of cluster.nodes.slice(1)) cluster.start(other.index);
  const all = cluster.nodes.map((n) => n.index);
  for (let attempt = 0; attempt < 30; attempt++) {
    const leader = await cluster.waitForLeader(15_000, all);
    if (leader === 0) return child;
    await cluster.kill(leader);
    await cluster.waitForLeader(
      15_000,
      all.filter((i) => i !== leader),
    );
    cluster.start(leader);
  }
  throw new Error('node 1 never became leader');
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const value = 'v'.repeat(options.value_bytes);
  const metrics_ports = options.metrics ? await freePortPairs(3) : [];
  const cluster = await TestCluster.create({
    nodes: 3,
    node_config: (i) => (options.metrics ? [`metrics_port ${metrics_ports[i]}`] : []),
  });
  const scraper = options.metrics ? setInterval(() => scrapeAll(metrics_ports), SCRAPE_MS) : null;
  let profiled: ChildProcess | null = null;
  try {
    if (options.profile_dir !== null)
      profiled = await startProfiledLeader(cluster, options.profile_dir);
    else cluster.startAll();
    const all = cluster.nodes.map((n) => n.index);
    const leader = await cluster.waitForLeader(15_000, all);
    const follower = all.find((i) => i !== leader)!;

    // Warm up (JIT, connections) and fill the key space so that GETs find values.
    const warm = new KvClient({ nodes: [cluster.address(leader)], call_timeout_ms: 30_000 });
    await pollUntil('a first write', 15_000, async () => {
      await warm.set('bench:0', value);
      return true;
    });
    let next = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next < KEY_SPACE) await warm.set(`bench:${next++}`, value);
      }),
    );
    await warm.close();

    console.log(
      `3-node cluster, value ${options.value_bytes} bytes, key space ` +
        `${KEY_SPACE}; leader node ${leader + 1}, follower node ${follower + 1}`,
    );
    console.log(row(COLUMNS.map(([name]) => name)));
    const targets = options.profile_dir !== null ? [leader] : [leader, follower];
    for (const target of targets) {
      for (const spec of specs(options)) {
        if (options.profile_dir !== null && spec.operation !== 'SET') continue;
        const pids = new Map<number, number>();
        for (const node of cluster.nodes) {
          const pid = node.index === 0 && profiled !== null ? profiled.pid : node.process?.pid;
          if (pid !== undefined) pids.set(node.index, pid);
        }
        console.log(formatResult(await run(cluster, pids, leader, target, spec, value)));
      }
    }
    console.log(
      'writes/fsync = acknowledged SETs / leader fsyncs; ' +
        'follower fsyncs = mean per follower over the same run;',
    );
    console.log(
      'cpu% = CPU time during the timed part / its wall time, for ' +
        'this process, the leader and the followers (2 cores = 200%)',
    );
    const leader_info = await cluster.info(leader);
    console.log(
      `leader fdatasync: avg ${leader_info?.wal_fsync_avg_ms ?? '?'} ms, max ` +
        `${leader_info?.wal_fsync_max_ms ?? '?'} ms over ${leader_info?.wal_fsyncs ?? '?'} fsyncs`,
    );
  } catch (error) {
    console.error(cluster.logs());
    throw error;
  } finally {
    if (scraper !== null) clearInterval(scraper);
    if (profiled !== null && profiled.exitCode === null) {
      const exited = new Promise<void>((resolve) => profiled?.once('exit', () => resolve()));
      profiled.kill('SIGTERM');
      await exited;
    }
    await cluster.destroy();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
