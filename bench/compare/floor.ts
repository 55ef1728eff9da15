/**
 * The floor for one connection doing serial SETs: one leader fsync, one follower fsync and one
 * loopback round trip. Measured idle (fdatasync of small appends in the data directory's file
 * system; TCP ping-pong with an echo server in another Node process) before the load starts.
 */
import { spawn } from 'node:child_process';
import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { percentile } from './load_spec';
import type { ProcessGroup } from './processes';

export interface Floor {
  fdatasync_p50_ms: number;
  fdatasync_p99_ms: number;
  loopback_rtt_p50_ms: number;
  /** 2 × fdatasync p50 + loopback round trip p50 (the definition). */
  floor_ms: number;
  /**
   * fdatasync p50 + 2 × loopback round trip p50: the leader's fsync overlapping the follower's
   * (client → leader → follower → leader → client).
   */
  overlapped_floor_ms: number;
}

/** p50/p99 of appending `bytes` and fdatasync'ing, `count` times, in a file under `dir`. */
export function measureFdatasync(dir: string, count = 200, bytes = 64): number[] {
  const file = join(dir, 'fdatasync-probe');
  const fd = openSync(file, 'a');
  const data = Buffer.alloc(bytes, 0x61);
  const times_ms: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const started_ms = performance.now();
      writeSync(fd, data);
      fdatasyncSync(fd);
      times_ms.push(performance.now() - started_ms);
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  return times_ms.sort((a, b) => a - b);
}

const ECHO_SERVER = `
const server = require('node:net').createServer((s) => { s.setNoDelay(true); s.pipe(s); });
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

async function echoServerPort(group: ProcessGroup): Promise<{ port: number; stop: () => void }> {
  const child = spawn(process.execPath, ['-e', ECHO_SERVER], { stdio: ['ignore', 'pipe', 'pipe'] });
  group.add(child, 'echo server');
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    child.once('exit', () => reject(new Error('echo server exited')));
  });
  return { port, stop: () => child.kill('SIGKILL') };
}

/** Round trips of a 32-byte message to an echo server in another process, ascending ms. */
export async function measureLoopbackRtt(group: ProcessGroup, count = 2000): Promise<number[]> {
  const echo = await echoServerPort(group);
  const socket = net.connect({ host: '127.0.0.1', port: echo.port });
  socket.setNoDelay(true);
  const message = Buffer.alloc(32, 0x62);
  const times_ms: number[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let received = 0;
      let sent_ms = 0;
      const send = (): void => {
        sent_ms = performance.now();
        socket.write(message);
      };
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received < message.length) return;
        received -= message.length;
        times_ms.push(performance.now() - sent_ms);
        if (times_ms.length === count) resolve();
        else send();
      });
      socket.once('error', reject);
      socket.once('connect', send);
    });
  } finally {
    socket.destroy();
    echo.stop();
  }
  return times_ms.sort((a, b) => a - b);
}

export async function measureFloor(group: ProcessGroup, dir: string): Promise<Floor> {
  const fsyncs = measureFdatasync(dir);
  const rtts = await measureLoopbackRtt(group);
  const fdatasync_p50_ms = percentile(fsyncs, 0.5);
  const loopback_rtt_p50_ms = percentile(rtts, 0.5);
  return {
    fdatasync_p50_ms,
    fdatasync_p99_ms: percentile(fsyncs, 0.99),
    loopback_rtt_p50_ms,
    floor_ms: 2 * fdatasync_p50_ms + loopback_rtt_p50_ms,
    overlapped_floor_ms: fdatasync_p50_ms + 2 * loopback_rtt_p50_ms,
  };
}
