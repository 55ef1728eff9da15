/** The benchmark's table (text) and the same data as JSON. */
import type { Floor } from './floor';
import type { LoadSpec } from './load_spec';
import type { SystemResult } from './measure';

export interface RowResult {
  label: string;
  spec: LoadSpec;
  cluster: SystemResult;
  redis: SystemResult | null;
  /** Cluster ops/s over Redis ops/s. */
  ratio: number | null;
}

export interface SingleSetFsync {
  /** Mean fsync time on the leader and on one follower during the 1-connection SET row. */
  leader_ms: number | null;
  follower_ms: number | null;
}

export interface BenchReport {
  started_at: string;
  cores: number;
  load_average_1m: number;
  generator: 'redis-benchmark' | 'node';
  requests: Record<string, number>;
  key_space: number;
  value_bytes: number;
  floor: Floor | null;
  single_set_fsync: SingleSetFsync | null;
  rows: RowResult[];
}

const fixed = (value: number | null | undefined, digits: number, width: number): string =>
  (value === null || value === undefined ? '-' : value.toFixed(digits)).padStart(width);

function loadCells(result: SystemResult | null): string {
  if (result === null) return `${'-'.padStart(9)}${' '.repeat(21)}`;
  const load = result.load;
  return [
    fixed(load.ops_per_s, 0, 9),
    fixed(load.p50_ms, 2, 6),
    fixed(load.p99_ms, 2, 6),
    fixed(load.p999_ms, 2, 6),
  ].join(' ');
}

function cpuCells(result: SystemResult | null, names: readonly string[]): string {
  const cells = names.map((name) => fixed(result?.cpu_us_per_op[name], 1, 9));
  return `${cells.join(' ')} ${fixed(result?.cores_busy, 2, 5)}`;
}

/** RSS in MB of the named processes, "a/b/c". */
function rssCell(result: SystemResult | null, names: readonly string[]): string {
  return names.map((name) => fixed(result?.rss_mb[name], 0, 0)).join('/');
}

function floorLine(report: BenchReport, row: RowResult): string | null {
  const floor = report.floor;
  if (floor === null || row.spec.connections !== 1 || row.spec.operation !== 'SET') return null;
  const fsync = report.single_set_fsync;
  const ms = (value: number | null | undefined): string => fixed(value, 3, 0);
  const mean_ms = 1000 / row.cluster.load.ops_per_s;
  const in_situ_ms =
    fsync === null || fsync.leader_ms === null || fsync.follower_ms === null
      ? null
      : fsync.leader_ms + fsync.follower_ms + floor.loopback_rtt_p50_ms;
  return [
    `    floor: leader fsync ${ms(floor.fdatasync_p50_ms)} + follower fsync`,
    ` ${ms(floor.fdatasync_p50_ms)} + loopback RTT ${ms(floor.loopback_rtt_p50_ms)}`,
    ` = ${ms(floor.floor_ms)} ms (${(1000 / floor.floor_ms).toFixed(0)} serial SETs/s);`,
    ` this row's mean ${ms(mean_ms)} ms = ${(mean_ms / floor.floor_ms).toFixed(2)}x the floor\n`,
    `    (overlapping the leader's fsync with the follower's: fsync + 2 RTT`,
    ` = ${ms(floor.overlapped_floor_ms)} ms; idle fdatasync p50/p99 ${ms(floor.fdatasync_p50_ms)}`,
    `/${ms(floor.fdatasync_p99_ms)} ms)\n`,
    `    with the nodes' own mean fsyncs during this row: leader ${ms(fsync?.leader_ms)}`,
    ` + follower ${ms(fsync?.follower_ms)} + RTT = ${ms(in_situ_ms)} ms`,
    in_situ_ms === null ? '' : ` (this row's mean = ${(mean_ms / in_situ_ms).toFixed(2)}x)`,
  ].join('');
}

export function formatReport(report: BenchReport): string {
  const out: string[] = [];
  out.push(
    `3-node cluster (fsync on) vs redis-server --appendonly yes --appendfsync always;` +
      ` load: ${report.generator}, key space ${report.key_space}, value ${report.value_bytes}` +
      ` bytes; ${report.cores} cores, load average ${report.load_average_1m.toFixed(2)} at start`,
  );
  out.push('');
  out.push(
    `${'load'.padEnd(15)} op  | cluster ops/s    p50    p99  p99.9 |` +
      '   redis ops/s    p50    p99  p99.9 | ratio',
  );
  for (const row of report.rows) {
    out.push(
      `${row.label.padEnd(15)} ${row.spec.operation} | ${' '.repeat(4)}${loadCells(row.cluster)}` +
        ` | ${' '.repeat(4)}${loadCells(row.redis)} | ${fixed(row.ratio, 2, 4)}x`,
    );
    const floor = floorLine(report, row);
    if (floor !== null) out.push(floor);
  }
  out.push('(latencies in ms)');
  out.push('');
  out.push(...formatCpu(report));
  return out.join('\n');
}

function formatCpu(report: BenchReport): string[] {
  const cluster_names = ['leader', 'follower A', 'follower B', 'generator'];
  const redis_names = ['redis-server', 'generator'];
  const out = [
    'CPU µs per operation (cores = CPU of these processes / wall time; 2 cores on this machine)',
    'and RSS in MB after the row (leader/follower/follower, redis-server)',
    `${'load'.padEnd(15)} op  |    leader follower1 follower2 generator cores |` +
      ' redis-srv generator cores | RSS MB',
  ];
  for (const row of report.rows) {
    const cluster_rss = rssCell(row.cluster, cluster_names.slice(0, 3));
    const rss = `${cluster_rss}, ${rssCell(row.redis, ['redis-server'])}`;
    out.push(
      `${row.label.padEnd(15)} ${row.spec.operation} | ${cpuCells(row.cluster, cluster_names)} |` +
        ` ${cpuCells(row.redis, redis_names)} | ${rss}`,
    );
  }
  return out;
}
