/**
 * Runs redis-benchmark for one load and parses its report. It runs under a shell that prints its
 * own /proc stat line after redis-benchmark exits: the shell's waited-children CPU counters then
 * hold exactly redis-benchmark's CPU time.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import type { LoadResult, LoadSpec } from './load_spec';
import { statCpuMs } from './proc_cpu';
import type { ProcessGroup } from './processes';

const STAT_MARK = '@@stat ';
const WRAPPER = `redis-benchmark "$@"; rc=$?; echo "${STAT_MARK}$(cat /proc/$$/stat)"; exit $rc`;

export function redisBenchmarkInstalled(): boolean {
  return spawnSync('redis-benchmark', ['--version'], { stdio: 'ignore' }).status === 0;
}

export function redisBenchmarkArgs(port: number, spec: LoadSpec): string[] {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-c', String(spec.connections)];
  args.push('-n', String(spec.requests), '-r', String(spec.key_space));
  args.push('-d', String(spec.value_bytes), '-t', spec.operation.toLowerCase());
  if (spec.pipeline > 1) args.push('-P', String(spec.pipeline));
  return args;
}

function numberAfter(text: string, pattern: RegExp, what: string): number {
  const match = pattern.exec(text);
  const value = Number(match?.[1]);
  if (match === null || !Number.isFinite(value)) {
    throw new Error(`redis-benchmark output has no ${what}:\n${text.slice(-2000)}`);
  }
  return value;
}

/**
 * p99.9 from the "Latency by percentile distribution" lines, which list the HdrHistogram
 * percentiles 50, 75, 87.5, ... 99.902, ...: the first at or above 99.9 (a slight upper bound).
 */
function p999FromDistribution(text: string): number {
  const after = text.split('Latency by percentile distribution:')[1] ?? '';
  const section = after.split('Cumulative distribution of latencies:')[0] ?? '';
  for (const line of section.split('\n')) {
    const match = /^\s*([\d.]+)% <= ([\d.]+) milliseconds/.exec(line);
    if (match !== null && Number(match[1]) >= 99.9) return Number(match[2]);
  }
  throw new Error(`redis-benchmark output has no percentile distribution:\n${text.slice(-2000)}`);
}

/** Parses redis-benchmark 7's default (not --csv, not -q) report plus the shell's stat line. */
export function parseRedisBenchmark(output: string, spec: LoadSpec): LoadResult {
  const text = output.replace(/\r/g, '\n');
  const ops_per_s = numberAfter(text, /throughput summary: ([\d.]+) requests per second/, 'rps');
  const elapsed_s = numberAfter(text, /requests completed in ([\d.]+) seconds/, 'elapsed time');
  // avg min p50 p95 p99 max under the "latency summary (msec):" header.
  const summary = /latency summary \(msec\):\s*\n\s*avg.*\n\s*([\d.\s]+)\n/.exec(text);
  const columns = (summary?.[1] ?? '').trim().split(/\s+/).map(Number);
  if (columns.length < 6) throw new Error(`no latency summary:\n${text.slice(-2000)}`);
  const stat_line = text.split('\n').find((line) => line.startsWith(STAT_MARK));
  return {
    generator: 'redis-benchmark',
    completed: spec.requests,
    elapsed_ms: elapsed_s * 1000,
    ops_per_s,
    p50_ms: columns[2] ?? 0,
    p99_ms: columns[4] ?? 0,
    p999_ms: p999FromDistribution(text),
    errors: 0,
    misses: 0,
    generator_cpu_ms:
      stat_line === undefined ? null : statCpuMs(stat_line.slice(STAT_MARK.length), true),
  };
}

export async function runRedisBenchmark(
  group: ProcessGroup,
  port: number,
  spec: LoadSpec,
): Promise<LoadResult> {
  const args = ['-c', WRAPPER, 'sh', ...redisBenchmarkArgs(port, spec)];
  const child: ChildProcess = spawn('sh', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const { tail } = group.add(child, 'redis-benchmark');
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    if (output.length > 4_000_000) output = output.slice(-1_000_000);
  });
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  if (code !== 0) throw new Error(`redis-benchmark exited with ${code}\n${tail()}`);
  return parseRedisBenchmark(output, spec);
}
