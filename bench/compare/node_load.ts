/**
 * The built-in load generator, used when redis-benchmark is not installed: `connections` sockets,
 * each sending `pipeline` commands at once and waiting for their replies before the next batch,
 * until `requests` commands are done. A command's latency runs from its batch's write to its
 * reply, as in redis-benchmark.
 */
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { benchKey, type LoadResult, type LoadSpec, percentile } from './load_spec';
import { ownCpuMs } from './proc_cpu';
import { ReplyScanner, type ScanCounts } from './reply_scanner';

interface Shared {
  spec: LoadSpec;
  value: string;
  issued: number;
  latencies_ms: Float64Array;
  completed: number;
  errors: number;
  misses: number;
}

function encodeCommand(args: string[]): string {
  let text = `*${args.length}\r\n`;
  for (const arg of args) text += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`;
  return text;
}

function nextBatch(shared: Shared): { text: string; count: number } {
  const count = Math.min(shared.spec.pipeline, shared.spec.requests - shared.issued);
  shared.issued += count;
  let text = '';
  for (let i = 0; i < count; i++) {
    const key = benchKey(Math.floor(Math.random() * shared.spec.key_space));
    const args = shared.spec.operation === 'SET' ? ['SET', key, shared.value] : ['GET', key];
    text += encodeCommand(args);
  }
  return { text, count };
}

function connect(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    socket.setNoDelay(true);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Drives one open connection until the shared request budget is used up. */
function drive(socket: net.Socket, shared: Shared): Promise<void> {
  return new Promise((resolve, reject) => {
    const scanner = new ReplyScanner();
    let outstanding = 0;
    let sent_ms = 0;
    const send = (): void => {
      if (shared.issued >= shared.spec.requests) {
        resolve();
        return;
      }
      const batch = nextBatch(shared);
      outstanding = batch.count;
      sent_ms = performance.now();
      socket.write(batch.text);
    };
    socket.on('data', (chunk: Buffer) => {
      let counts: ScanCounts;
      try {
        counts = scanner.feed(chunk);
      } catch (error) {
        socket.destroy();
        reject(error);
        return;
      }
      const now_ms = performance.now();
      for (let i = 0; i < counts.replies; i++) {
        shared.latencies_ms[shared.completed++] = now_ms - sent_ms;
      }
      shared.errors += counts.errors;
      shared.misses += counts.nils;
      outstanding -= counts.replies;
      if (outstanding < 0) reject(new Error('more replies than requests'));
      else if (outstanding === 0) send();
    });
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('server closed the connection')));
    send();
  });
}

export async function runNodeLoad(host: string, port: number, spec: LoadSpec): Promise<LoadResult> {
  const shared: Shared = {
    spec,
    value: 'x'.repeat(spec.value_bytes),
    issued: 0,
    latencies_ms: new Float64Array(spec.requests),
    completed: 0,
    errors: 0,
    misses: 0,
  };
  const sockets = await Promise.all(
    Array.from({ length: spec.connections }, () => connect(host, port)),
  );
  try {
    const cpu_before_ms = ownCpuMs();
    const started_ms = performance.now();
    await Promise.all(sockets.map((socket) => drive(socket, shared)));
    const elapsed_ms = performance.now() - started_ms;
    const generator_cpu_ms = ownCpuMs() - cpu_before_ms;
    const sorted = shared.latencies_ms.subarray(0, shared.completed).sort();
    return {
      generator: 'node',
      completed: shared.completed,
      elapsed_ms,
      ops_per_s: (shared.completed / elapsed_ms) * 1000,
      p50_ms: percentile(sorted, 0.5),
      p99_ms: percentile(sorted, 0.99),
      p999_ms: percentile(sorted, 0.999),
      errors: shared.errors,
      misses: shared.misses,
      generator_cpu_ms,
    };
  } finally {
    for (const socket of sockets) socket.destroy();
  }
}
