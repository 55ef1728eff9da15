/** Runs one load while sampling the CPU time of every process involved. */
import { performance } from 'node:perf_hooks';
import type { TestCluster } from '../../test/integration/cluster_harness';
import type { LoadResult } from './load_spec';
import { processCpuMs, processRssMb } from './proc_cpu';

export interface NamedProcess {
  name: string;
  pid: number | undefined;
}

export interface SystemResult {
  load: LoadResult;
  /** CPU µs per completed operation, by process name ("generator" is the load generator). */
  cpu_us_per_op: Record<string, number | null>;
  /**
   * CPU of all listed processes and the generator over the wall time of the run (generator start
   * and connection set-up included), in cores.
   */
  cores_busy: number | null;
  /** Resident set size right after the run, MB, by process name. */
  rss_mb: Record<string, number | null>;
}

export async function measure(
  processes: readonly NamedProcess[],
  run: () => Promise<LoadResult>,
): Promise<SystemResult> {
  const before = processes.map((p) => processCpuMs(p.pid));
  const started_ms = performance.now();
  const load = await run();
  const wall_ms = performance.now() - started_ms;
  const after = processes.map((p) => processCpuMs(p.pid));
  const rss_mb = Object.fromEntries(processes.map((p) => [p.name, processRssMb(p.pid)]));
  const ops = Math.max(1, load.completed);
  const cpu_us_per_op: Record<string, number | null> = {};
  let total_ms: number | null = load.generator_cpu_ms;
  processes.forEach((p, i) => {
    const start = before[i] ?? null;
    const end = after[i] ?? null;
    const used_ms = start === null || end === null ? null : end - start;
    cpu_us_per_op[p.name] = used_ms === null ? null : (used_ms * 1000) / ops;
    total_ms = total_ms === null || used_ms === null ? null : total_ms + used_ms;
  });
  cpu_us_per_op.generator =
    load.generator_cpu_ms === null ? null : (load.generator_cpu_ms * 1000) / ops;
  return {
    load,
    cpu_us_per_op,
    cores_busy: total_ms === null ? null : total_ms / wall_ms,
    rss_mb,
  };
}

export interface FsyncTotals {
  fsyncs: number;
  total_ms: number;
}

/** A node's fsync count and total fsync time so far, from INFO (count × running average). */
export async function fsyncTotals(cluster: TestCluster, index: number): Promise<FsyncTotals> {
  const info = await cluster.info(index);
  const fsyncs = Number(info?.wal_fsyncs);
  const avg_ms = Number(info?.wal_fsync_avg_ms);
  if (!Number.isFinite(fsyncs) || !Number.isFinite(avg_ms)) {
    throw new Error(`node ${index + 1} gave no wal_fsyncs / wal_fsync_avg_ms in INFO`);
  }
  return { fsyncs, total_ms: fsyncs * avg_ms };
}

/** Mean fsync time between two readings; null when there was no fsync. */
export function meanFsyncMs(before: FsyncTotals, after: FsyncTotals): number | null {
  const count = after.fsyncs - before.fsyncs;
  return count <= 0 ? null : (after.total_ms - before.total_ms) / count;
}
