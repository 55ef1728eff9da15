/**
 * Write-ahead log throughput with real fdatasync: 10,000 saves of one 50-byte
 * entry each, (a) one at a time, each awaited (one fsync per save), and (b)
 * with 100 saves always in flight (group commit shares fsyncs).
 * Run: node dist/bench/storage_fsync.js  (STORAGE_BENCH_DIR picks the disk; default os.tmpdir()).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { RaftStorage } from '../src/storage';

const SAVES = 10_000;
const ENTRY_BYTES = 50;
const CONCURRENCY = 100;

interface RunResult {
  label: string;
  elapsed_ms: number;
  latencies_ms: number[];
  fsyncs: number;
  fsync_avg_ms: number;
}

async function run(label: string, concurrency: number, root: string): Promise<RunResult> {
  const dir = await fs.promises.mkdtemp(path.join(root, 'storage-bench-'));
  try {
    const { storage } = await RaftStorage.open(dir);
    const fsyncs_at_start = storage.stats().fsyncs;
    const data = Buffer.alloc(ENTRY_BYTES, 0x61);
    const latencies_ms: number[] = [];
    let next_index = 1;
    const saveOne = async (): Promise<void> => {
      const index = next_index;
      next_index += 1;
      const started_ms = performance.now();
      await storage.save(null, { first_index: index, entries: [{ term: 1, data }] });
      latencies_ms.push(performance.now() - started_ms);
    };
    // Each worker keeps one save in flight, so `concurrency` workers keep that many in flight.
    const worker = async (): Promise<void> => {
      while (next_index <= SAVES) await saveOne();
    };
    const started_ms = performance.now();
    await Promise.all(Array.from({ length: concurrency }, worker));
    const elapsed_ms = performance.now() - started_ms;
    const stats = storage.stats();
    await storage.close();
    return {
      label,
      elapsed_ms,
      latencies_ms,
      fsyncs: stats.fsyncs - fsyncs_at_start,
      fsync_avg_ms: stats.fsync_avg_ms,
    };
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? 0;
}

function report(result: RunResult): string {
  const sorted = [...result.latencies_ms].sort((a, b) => a - b);
  const saves_per_s = (result.latencies_ms.length / result.elapsed_ms) * 1000;
  return [
    result.label.padEnd(28),
    `${saves_per_s.toFixed(0).padStart(7)} saves/s`,
    `${String(result.fsyncs).padStart(6)} fsyncs`,
    `${(result.latencies_ms.length / Math.max(1, result.fsyncs)).toFixed(1).padStart(6)} ` +
      `saves/fsync`,
    `fsync avg ${result.fsync_avg_ms.toFixed(2)} ms`,
    `p50 ${percentile(sorted, 0.5).toFixed(2)} ms`,
    `p99 ${percentile(sorted, 0.99).toFixed(2)} ms`,
  ].join('  ');
}

export async function benchStorage(): Promise<void> {
  const root = process.env.STORAGE_BENCH_DIR ?? os.tmpdir();
  process.stdout.write(
    `storage fsync bench: ${SAVES} saves of one ` +
      `${ENTRY_BYTES}-byte entry, data dir under ${root}\n`,
  );
  process.stdout.write(`${report(await run('(a) sequential, awaited', 1, root))}\n`);
  process.stdout.write(`${report(await run(`(b) ${CONCURRENCY} in flight`, CONCURRENCY, root))}\n`);
}

if (require.main === module) {
  benchStorage().catch((error: unknown) => {
    process.stderr.write(
      `${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  });
}
