/**
 * The numbers issue 10 asks for, measured on real processes: a fresh 3-node cluster (fsync on,
 * temporary directories, free loopback ports) loaded by redis-benchmark.
 *
 * 1. Load `--keys` distinct keys (default 1M) of `--value-bytes` (100) through the leader; then,
 *    while a client PINGs the leader back to back, take a snapshot with RAFT.SNAPSHOT. Prints the
 *    longest PING round trip (an upper bound on the event loop's longest pause), the leader's
 *    INFO `snapshot_serialize_max_ms` (its longest synchronous snapshot step) and the snapshot's
 *    duration and size.
 * 2. Peak RSS (VmHWM) of every node holding those keys.
 * 3. Restart: a follower is killed (-9) and restarted: time from spawn to its first answered GET,
 *    and to having applied everything committed. Then the whole cluster is killed and restarted:
 *    time to the first acknowledged write.
 * 4. A second fresh cluster takes `--overwrites` SETs (1M) over 1,000 keys: the size of each data
 *    directory afterwards.
 * 5. With --catchup: a follower is stopped while `--catchup-writes` (200k) distinct keys are
 *    written, then restarted: time until it has applied the leader's commit index (needs
 *    InstallSnapshot once the leader has compacted past it).
 *
 * Usage: npm run bench:snapshot -- [--keys N] [--value-bytes B] [--overwrites N]
 *          [--no-overwrites] [--catchup] [--catchup-writes N] [--config "name value"]...
 * The snapshot thresholds are the node's defaults unless --config sets them. Every process and
 * directory it creates is removed at the end, on error and on Ctrl-C.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pollUntil, TestCluster } from '../test/integration/cluster_harness';
import { processCpuMs } from './compare/proc_cpu';
import { redisBenchmarkInstalled } from './compare/redis_benchmark';

interface Options {
  keys: number;
  value_bytes: number;
  overwrites: number;
  catchup: boolean;
  catchup_writes: number;
  config: string[];
}

const MIB = 1024 * 1024;
const clusters = new Set<TestCluster>();

function parseOptions(argv: string[]): Options {
  const options: Options = {
    keys: 1_000_000,
    value_bytes: 100,
    overwrites: 1_000_000,
    catchup: false,
    catchup_writes: 200_000,
    config: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${flag} needs a value`);
      return next;
    };
    if (flag === '--keys') options.keys = Number(value());
    else if (flag === '--value-bytes') options.value_bytes = Number(value());
    else if (flag === '--overwrites') options.overwrites = Number(value());
    else if (flag === '--catchup') options.catchup = true;
    else if (flag === '--no-overwrites') options.overwrites = 0;
    else if (flag === '--catchup-writes') options.catchup_writes = Number(value());
    else if (flag === '--config') options.config.push(value());
    else throw new Error(`unknown flag ${flag}`);
  }
  return options;
}

async function startCluster(options: Options): Promise<{ cluster: TestCluster; leader: number }> {
  const cluster = await TestCluster.create({
    nodes: 3,
    extra_config: options.config,
    log_level: 'warn',
  });
  clusters.add(cluster);
  cluster.startAll();
  const leader = await cluster.waitForLeader(30_000);
  return { cluster, leader };
}

async function stopCluster(cluster: TestCluster): Promise<void> {
  await cluster.destroy();
  clusters.delete(cluster);
}

/**
 * `requests` SETs by redis-benchmark through the leader; it stops at the first error reply (a
 * leader change on a loaded machine), so it is restarted against the new leader for what is
 * left, counted by the commit index. Resolves with the elapsed ms.
 */
async function load(
  cluster: TestCluster,
  requests: number,
  key_space: number,
  bytes: number,
): Promise<number> {
  const started = performance.now();
  let leader = await cluster.waitForLeader(30_000);
  const base = await infoNumber(cluster, leader, 'commit_index');
  for (let attempt = 1; ; attempt++) {
    const done = (await infoNumber(cluster, leader, 'commit_index')) - base;
    if (done >= requests) return performance.now() - started;
    try {
      await redisBenchmark(cluster.nodes[leader]!.client_port, requests - done, key_space, bytes);
    } catch (error) {
      if (attempt >= 20) throw error;
      const reason = error instanceof Error ? error.message.slice(-160) : String(error);
      console.log(`redis-benchmark stopped after ~${done} writes (${reason.trim()}); resuming`);
      leader = await cluster.waitForLeader(30_000);
    }
  }
}

/** redis-benchmark SETs against one node; resolves with the elapsed ms. */
async function redisBenchmark(port: number, requests: number, key_space: number, bytes: number) {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-t', 'set', '-n', String(requests)];
  args.push('-r', String(key_space), '-d', String(bytes), '-c', '50', '-q');
  const started = performance.now();
  const child = spawn('redis-benchmark', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  });
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  if (code !== 0) throw new Error(`redis-benchmark exited ${code}: ${output}`);
  if (/error/i.test(output)) throw new Error(`redis-benchmark reported errors: ${output}`);
  return performance.now() - started;
}

/** One inline command on a fresh connection; resolves with the first reply line. */
function inline(port: number, command: string, timeout_ms = 600_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${command}: no reply within ${timeout_ms} ms`));
    }, timeout_ms);
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString('latin1');
      const end = data.indexOf('\r\n');
      if (end < 0) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(data.slice(0, end));
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** PINGs `port` back to back on one connection until stopped; returns the longest round trip. */
function pingProbe(port: number): { stop: () => Promise<{ max_ms: number; pings: number }> } {
  const socket = net.connect({ host: '127.0.0.1', port });
  let max_ms = 0;
  let pings = 0;
  let sent_at = 0;
  let stopping = false;
  const ping = (): void => {
    sent_at = performance.now();
    socket.write('PING\r\n');
  };
  socket.once('connect', ping);
  socket.on('data', () => {
    max_ms = Math.max(max_ms, performance.now() - sent_at);
    pings++;
    if (!stopping) ping();
  });
  return {
    stop: async () => {
      stopping = true;
      socket.destroy();
      return { max_ms, pings };
    },
  };
}

async function infoNumber(cluster: TestCluster, index: number, field: string): Promise<number> {
  const info = await pollUntil(`INFO of node ${index + 1}`, 10_000, () => cluster.info(index));
  const value = info[field];
  if (value === undefined) throw new Error(`node ${index + 1}: no INFO field ${field}`);
  return Number(value);
}

/** Waits until every running node applied the leader's commit index. */
async function waitConverged(cluster: TestCluster, leader: number, timeout_ms: number) {
  const commit = await infoNumber(cluster, leader, 'commit_index');
  for (const node of cluster.nodes) {
    if (node.process === null) continue;
    await pollUntil(`node ${node.index + 1} to apply ${commit}`, timeout_ms, async () =>
      (await infoNumber(cluster, node.index, 'last_applied')) >= commit ? true : null,
    );
  }
}

function procStatusKib(pid: number | undefined, field: string): number {
  if (pid === undefined) return 0;
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return Number(match?.[1] ?? 0);
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const name of fs.readdirSync(dir)) total += fs.statSync(path.join(dir, name)).size;
  return total;
}

const mib = (bytes: number): string => `${(bytes / MIB).toFixed(1)} MiB`;
const ms = (value: number): string => `${value.toFixed(0)} ms`;

async function snapshotPause(cluster: TestCluster, leader: number): Promise<void> {
  const port = cluster.nodes[leader]!.client_port;
  // An automatic snapshot may be running: RAFT.SNAPSHOT refuses then, so retry.
  const probe = pingProbe(port);
  const started = performance.now();
  let reply = '';
  await pollUntil(
    'RAFT.SNAPSHOT to be taken',
    300_000,
    async () => {
      await inline(port, 'SET snapshot-probe 1'); // something applied since the last snapshot
      reply = await inline(port, 'RAFT.SNAPSHOT');
      return reply.startsWith('+OK') ? true : null;
    },
    200,
  );
  const took_ms = performance.now() - started;
  const { max_ms, pings } = await probe.stop();
  // The same probe for as long without a snapshot: pauses the node has anyway (GC, a loaded
  // machine), to tell apart from what snapshotting adds.
  const baseline = pingProbe(port);
  await new Promise((resolve) => setTimeout(resolve, took_ms));
  const idle = await baseline.stop();
  const step_ms = await infoNumber(cluster, leader, 'snapshot_serialize_max_ms');
  const bytes = await infoNumber(cluster, leader, 'snapshot_bytes');
  const duration = await infoNumber(cluster, leader, 'snapshot_last_duration_ms');
  console.log(
    `snapshot on the leader: RAFT.SNAPSHOT answered after ${ms(took_ms)} ` +
      `(snapshot_last_duration_ms ${ms(duration)}, ${mib(bytes)}); longest PING round trip ` +
      `${max_ms.toFixed(1)} ms over ${pings} pings (without a snapshot, as long: ` +
      `${idle.max_ms.toFixed(1)} ms over ${idle.pings}); longest snapshot step ` +
      `(snapshot_serialize_max_ms, since start) ${step_ms.toFixed(1)} ms`,
  );
}

async function restartFollower(cluster: TestCluster, leader: number): Promise<void> {
  const follower = (leader + 1) % 3;
  await cluster.kill(follower);
  const commit = await infoNumber(cluster, leader, 'commit_index');
  const started = performance.now();
  cluster.start(follower);
  const port = cluster.nodes[follower]!.client_port;
  await pollUntil('the restarted follower to answer GET', 120_000, async () =>
    (await inline(port, 'GET key:000000000001', 5_000)).startsWith('-') ? null : true,
  );
  const get_ms = performance.now() - started;
  const cpu_ms = processCpuMs(cluster.nodes[follower]!.process?.pid) ?? Number.NaN;
  await pollUntil('the restarted follower to apply the commit index', 120_000, async () =>
    (await infoNumber(cluster, follower, 'last_applied')) >= commit ? true : null,
  );
  const applied_ms = performance.now() - started;
  console.log(
    `restart of a follower (kill -9): first GET answered ${ms(get_ms)} after spawn ` +
      `(having used ${ms(cpu_ms)} of CPU: the time on an idle machine), ` +
      `all ${commit} committed entries applied after ${ms(applied_ms)}`,
  );
}

async function restartAll(cluster: TestCluster): Promise<void> {
  await cluster.stopAll();
  const started = performance.now();
  cluster.startAll();
  const ports = cluster.nodes.map((node) => node.client_port);
  await pollUntil('a write after the full restart', 120_000, async () => {
    for (const port of ports) {
      const reply = await inline(port, 'SET restart-probe 1', 5_000).catch(() => '-');
      if (reply.startsWith('+OK')) return true;
    }
    return null;
  });
  const cpu = cluster.nodes.map((node) => ms(processCpuMs(node.process?.pid) ?? Number.NaN));
  console.log(
    `restart of the whole cluster (kill -9 all): first acknowledged write ` +
      `${ms(performance.now() - started)} after spawn (CPU used by each node: ${cpu.join(', ')})`,
  );
}

function printRss(cluster: TestCluster, leader: number, phase: string): void {
  for (const node of cluster.nodes) {
    const pid = node.process?.pid;
    console.log(
      `${phase}: node ${node.index + 1}${node.index === leader ? ' (leader)' : ''}: peak RSS ` +
        `${mib(procStatusKib(pid, 'VmHWM') * 1024)}, RSS now ` +
        `${mib(procStatusKib(pid, 'VmRSS') * 1024)}, data dir ${mib(dirBytes(node.data_dir))}`,
    );
  }
}

async function measureLoaded(options: Options): Promise<void> {
  const { cluster } = await startCluster(options);
  const load_ms = await load(cluster, options.keys, 1_000_000_000, options.value_bytes);
  const leader = await cluster.waitForLeader(30_000);
  const keyspace = (await cluster.info(leader))?.db0 ?? '?';
  console.log(
    `loaded ${options.keys} SETs of ${options.value_bytes}-byte values (random keys of 1e9) ` +
      `in ${ms(load_ms)}; db0:${keyspace}`,
  );
  await waitConverged(cluster, leader, 300_000);
  await snapshotPause(cluster, leader);
  printRss(cluster, leader, 'after loading and snapshots');
  await restartFollower(cluster, leader);
  await restartAll(cluster);
  const restarted_leader = await cluster.waitForLeader(30_000);
  await waitConverged(cluster, restarted_leader, 300_000);
  printRss(cluster, restarted_leader, 'after the full restart (peak since restart)');
  await stopCluster(cluster);
}

async function measureOverwrites(options: Options): Promise<void> {
  const { cluster } = await startCluster(options);
  const load_ms = await load(cluster, options.overwrites, 1000, options.value_bytes);
  const leader = await cluster.waitForLeader(30_000);
  await waitConverged(cluster, leader, 300_000);
  const sizes = cluster.nodes.map(
    (node) =>
      `node ${node.index + 1}${node.index === leader ? ' (leader)' : ''} ` +
      `${mib(dirBytes(node.data_dir))}`,
  );
  console.log(
    `${options.overwrites} overwrites of 1,000 keys in ${ms(load_ms)}: data directories ` +
      sizes.join(', '),
  );
  await stopCluster(cluster);
}

async function measureCatchUp(options: Options): Promise<void> {
  const started_cluster = await startCluster(options);
  const cluster = started_cluster.cluster;
  const follower = (started_cluster.leader + 1) % 3;
  await cluster.kill(follower);
  await load(cluster, options.catchup_writes, 1_000_000_000, options.value_bytes);
  const leader = await cluster.waitForLeader(
    30_000,
    [0, 1, 2].filter((i) => i !== follower),
  );
  const commit = await infoNumber(cluster, leader, 'commit_index');
  const started = performance.now();
  cluster.start(follower);
  await pollUntil('the follower to catch up', 300_000, async () =>
    (await infoNumber(cluster, follower, 'last_applied')) >= commit ? true : null,
  );
  console.log(
    `follower that missed ${options.catchup_writes} writes: caught up (applied ${commit}) ` +
      `${ms(performance.now() - started)} after spawn; leader log_first_index ` +
      `${await infoNumber(cluster, leader, 'log_first_index')}`,
  );
  await stopCluster(cluster);
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  if (!redisBenchmarkInstalled()) throw new Error('redis-benchmark is not installed');
  const cleanup = (): void => {
    for (const cluster of clusters) void cluster.destroy();
    process.exit(130);
  };
  process.once('SIGINT', cleanup);
  process.once('SIGTERM', cleanup);
  try {
    console.log(`config: ${options.config.length > 0 ? options.config.join(', ') : 'defaults'}`);
    await measureLoaded(options);
    if (options.overwrites > 0) await measureOverwrites(options);
    if (options.catchup) await measureCatchUp(options);
  } finally {
    for (const cluster of clusters) await cluster.destroy();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
