/** The rows of the comparison: each load, SET then GET, on the cluster's leader and on Redis. */
import type { LoadResult, LoadSpec, Operation } from './load_spec';
import { fsyncTotals, meanFsyncMs, measure, type NamedProcess } from './measure';
import { runNodeLoad } from './node_load';
import type { BenchOptions } from './options';
import type { ProcessGroup } from './processes';
import { runRedisBenchmark } from './redis_benchmark';
import type { RowResult, SingleSetFsync } from './report';
import type { StartedCluster, StartedRedis } from './servers';

export interface BenchContext {
  group: ProcessGroup;
  options: BenchOptions;
  generator: 'redis-benchmark' | 'node';
  cluster: StartedCluster;
  redis: StartedRedis | null;
  log: (line: string) => void;
}

export interface RowPlan {
  label: string;
  spec: LoadSpec;
}

export function rowPlans(options: BenchOptions, operations: Operation[] = ['SET', 'GET']) {
  const loads = [
    { label: '50 conns', connections: 50, pipeline: 1, requests: options.requests },
    {
      label: '50 conns -P 16',
      connections: 50,
      pipeline: 16,
      requests: options.requests_pipelined,
    },
    { label: '1 conn', connections: 1, pipeline: 1, requests: options.requests_single },
  ];
  const plans: RowPlan[] = [];
  for (const { label, ...load } of loads) {
    for (const operation of operations) {
      const { key_space, value_bytes } = options;
      plans.push({ label, spec: { operation, ...load, key_space, value_bytes } });
    }
  }
  return plans;
}

function runLoad(context: BenchContext, port: number, spec: LoadSpec): Promise<LoadResult> {
  return context.generator === 'redis-benchmark'
    ? runRedisBenchmark(context.group, port, spec)
    : runNodeLoad('127.0.0.1', port, spec);
}

export function clusterProcesses(cluster: StartedCluster): NamedProcess[] {
  const followers = cluster.cluster.nodes.filter((node) => node.index !== cluster.leader);
  return [
    { name: 'leader', pid: cluster.children[cluster.leader]?.pid },
    { name: 'follower A', pid: cluster.children[followers[0]?.index ?? -1]?.pid },
    { name: 'follower B', pid: cluster.children[followers[1]?.index ?? -1]?.pid },
  ];
}

/** Runs `spec` on the cluster's leader; `fsync` gets the nodes' mean fsync time during it. */
export async function clusterRow(
  context: BenchContext,
  spec: LoadSpec,
  fsync?: SingleSetFsync,
): Promise<RowResult['cluster']> {
  const { cluster } = context.cluster;
  const leader = context.cluster.leader;
  const follower = cluster.nodes.find((node) => node.index !== leader)?.index ?? 0;
  const before = [await fsyncTotals(cluster, leader), await fsyncTotals(cluster, follower)];
  const port = cluster.nodes[leader]!.client_port;
  const processes = clusterProcesses(context.cluster);
  const result = await measure(processes, () => runLoad(context, port, spec));
  if (fsync !== undefined) {
    // Followers persist what the leader acknowledged a moment later.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const after = [await fsyncTotals(cluster, leader), await fsyncTotals(cluster, follower)];
    fsync.leader_ms = meanFsyncMs(before[0]!, after[0]!);
    fsync.follower_ms = meanFsyncMs(before[1]!, after[1]!);
  }
  return result;
}

async function warmUp(context: BenchContext): Promise<void> {
  const spec: LoadSpec = {
    operation: 'SET',
    connections: 50,
    pipeline: 1,
    requests: 5_000,
    key_space: context.options.key_space,
    value_bytes: context.options.value_bytes,
  };
  await clusterRow(context, spec);
  if (context.redis !== null) await runLoad(context, context.redis.port, spec);
}

export async function benchRows(
  context: BenchContext,
  plans: readonly RowPlan[],
): Promise<{ rows: RowResult[]; single_set_fsync: SingleSetFsync }> {
  context.log('warming up (5000 SETs each, not reported)');
  await warmUp(context);
  const single_set_fsync: SingleSetFsync = { leader_ms: null, follower_ms: null };
  const rows: RowResult[] = [];
  for (const { label, spec } of plans) {
    context.log(`${label} ${spec.operation}: ${spec.requests} requests`);
    const single_set = spec.connections === 1 && spec.operation === 'SET';
    const cluster = await clusterRow(context, spec, single_set ? single_set_fsync : undefined);
    const redis = context.redis;
    const redis_result =
      redis === null
        ? null
        : await measure([{ name: 'redis-server', pid: redis.child.pid }], () =>
            runLoad(context, redis.port, spec),
          );
    const ratio =
      redis_result === null ? null : cluster.load.ops_per_s / redis_result.load.ops_per_s;
    rows.push({ label, spec, cluster, redis: redis_result, ratio });
  }
  return { rows, single_set_fsync };
}
