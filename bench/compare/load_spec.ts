/** One benchmark load, the same parameters for redis-benchmark and the built-in generator. */
export type Operation = 'SET' | 'GET';

export interface LoadSpec {
  operation: Operation;
  connections: number;
  /** Commands sent back to back on one connection before waiting for their replies (-P). */
  pipeline: number;
  requests: number;
  /** Keys are drawn uniformly from key:000000000000 .. key space - 1 (-r). */
  key_space: number;
  value_bytes: number;
}

export interface LoadResult {
  /** How the load was generated. */
  generator: 'redis-benchmark' | 'node';
  completed: number;
  elapsed_ms: number;
  ops_per_s: number;
  p50_ms: number;
  p99_ms: number;
  p999_ms: number;
  /** Error replies (built-in generator only; redis-benchmark does not count them). */
  errors: number;
  /** GETs answered with nil (built-in generator only). */
  misses: number;
  /** CPU the load generator itself used, ms. */
  generator_cpu_ms: number | null;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: ArrayLike<number>, fraction: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil(fraction * sorted.length) - 1;
  return sorted[Math.max(0, Math.min(sorted.length - 1, rank))] ?? 0;
}

/** The key redis-benchmark makes of `-r` random numbers: key:%012d. */
export function benchKey(n: number): string {
  return `key:${String(n).padStart(12, '0')}`;
}
