/**
 * `--profile DIR`: starts the three nodes under `node --cpu-prof`, runs the 50-connection SET row
 * on the leader, stops the nodes with SIGTERM so that each writes its .cpuprofile into DIR, and
 * prints the top self-time functions of the leader and of each follower.
 */
import { mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { formatTop } from './cpuprofile_top';
import { redisBenchmarkInstalled } from './redis_benchmark';
import type { BenchOptions } from './options';
import type { ProcessGroup } from './processes';
import { formatReport } from './report';
import { type BenchContext, benchRows, clusterProcesses, rowPlans } from './rows';
import { startCluster } from './servers';

export async function profileRun(
  group: ProcessGroup,
  options: BenchOptions,
  profile_dir: string,
): Promise<void> {
  const dir = resolve(profile_dir);
  mkdirSync(dir, { recursive: true });
  const log = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  const cluster = await startCluster(group, ['--cpu-prof', '--cpu-prof-dir', dir]);
  const generator = !options.node_load && redisBenchmarkInstalled() ? 'redis-benchmark' : 'node';
  const context: BenchContext = { group, options, generator, cluster, redis: null, log };
  const plans = rowPlans(options, ['SET']).filter((plan) => plan.label === '50 conns');
  const { rows } = await benchRows(context, plans);
  const roles = clusterProcesses(cluster);
  // SIGTERM: the nodes shut down cleanly, and only then does node write the profile.
  await Promise.all(cluster.children.map((child) => group.stop(child, 'SIGTERM')));
  const files = readdirSync(dir).filter((name) => name.endsWith('.cpuprofile'));
  const out = [formatReport({ ...emptyReport(options, generator), rows }), ''];
  for (const role of roles) {
    const file = files.find((name) => name.includes(`.${role.pid}.`));
    out.push(`${role.name} (pid ${role.pid}):`);
    out.push(file === undefined ? '  no profile written' : formatTop(join(dir, file), 15), '');
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

function emptyReport(options: BenchOptions, generator: 'redis-benchmark' | 'node') {
  return {
    started_at: new Date().toISOString(),
    cores: 0,
    load_average_1m: 0,
    generator,
    requests: { '50 conns': options.requests },
    key_space: options.key_space,
    value_bytes: options.value_bytes,
    floor: null,
    single_set_fsync: null,
    rows: [],
  };
}
