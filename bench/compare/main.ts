/**
 * `npm run bench [-- --json ...]`: the same load against a fresh 3-node cluster and a Redis with
 * `appendfsync always`, side by side, with CPU per operation of every process involved. See
 * options.ts for the flags and issue 12 for the rows.
 */
import { cpus, loadavg } from 'node:os';
import { measureFloor } from './floor';
import { parseOptions } from './options';
import { ProcessGroup } from './processes';
import { profileRun } from './profile_run';
import type { BenchReport } from './report';
import { formatReport } from './report';
import { redisBenchmarkInstalled } from './redis_benchmark';
import { type BenchContext, benchRows, rowPlans } from './rows';
import { startCluster, startRedis } from './servers';
import { spawnSync } from 'node:child_process';

function redisServerInstalled(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

async function compare(group: ProcessGroup, argv: readonly string[]): Promise<void> {
  const options = parseOptions(argv);
  if (options.profile_dir !== null) return profileRun(group, options, options.profile_dir);
  const log = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  const generator = !options.node_load && redisBenchmarkInstalled() ? 'redis-benchmark' : 'node';
  const started_at = new Date().toISOString();
  const load_average_1m = loadavg()[0] ?? 0;
  log('starting the cluster');
  const cluster = await startCluster(group, []);
  const with_redis = !options.no_redis && redisServerInstalled();
  if (!with_redis) log('redis-server not installed (or --no-redis): cluster only');
  const redis = with_redis ? await startRedis(group) : null;
  log('measuring the floor (fdatasync in the data directory, loopback round trip)');
  const floor = await measureFloor(group, cluster.cluster.dir);
  const context: BenchContext = { group, options, generator, cluster, redis, log };
  try {
    const { rows, single_set_fsync } = await benchRows(context, rowPlans(options));
    const report: BenchReport = {
      started_at,
      cores: cpus().length,
      load_average_1m,
      generator,
      requests: {
        '50 conns': options.requests,
        '50 conns -P 16': options.requests_pipelined,
        '1 conn': options.requests_single,
      },
      key_space: options.key_space,
      value_bytes: options.value_bytes,
      floor,
      single_set_fsync,
      rows,
    };
    process.stdout.write(
      options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`,
    );
  } catch (error) {
    log(cluster.logs());
    if (redis !== null) log(redis.logs());
    throw error;
  }
}

function main(): void {
  const group = new ProcessGroup();
  const interrupted = (signal: NodeJS.Signals): void => {
    process.stderr.write(`${signal}: stopping every process the benchmark started\n`);
    group.killAllNow();
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  compare(group, process.argv.slice(2))
    .finally(() => group.stopAll())
    .catch((error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : error}\n`);
      process.exitCode = 1;
    });
}

main();
