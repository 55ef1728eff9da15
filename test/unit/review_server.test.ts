/**
 * Reviewer tests for the server glue, run in-process. Each test asserts the
 * intended behaviour; a failure demonstrates the bug named in the title.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import { KvNode } from '../../src/server/kv_node';
import { LeaderForwarder } from '../../src/server/forwarder';
import type { RaftStorage } from '../../src/storage';
import { SILENT_LOGGER } from '../../src/util/log';
import { classifyErrorReply } from '../../src/client/error_reply';
import { KvClient } from '../../src/client';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function freePorts(count: number): Promise<number[]> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 35_000);
    const ports = Array.from({ length: count }, (_, i) => base + i);
    let ok = true;
    for (const p of ports) if (!(await portFree(p)) || !(await portFree(p - 1000))) ok = false;
    if (ok) return ports;
  }
  throw new Error('no free ports');
}

function roleOf(node: KvNode): string {
  return /role:(\w+)/.exec(node.info('raft'))?.[1] ?? '?';
}

test('finding 3 (in-process): a graceful stop() of a follower under steady replication neither waits out the 10 s persist timeout nor calls storage.save after storage.close (fatal "save after close" -> exit 1)', {
  timeout: 90_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvraft-review-'));
  const ports = await freePorts(3);
  const nodes: KvNode[] = [];
  const fatal: string[] = [];
  let client: KvClient | null = null;
  try {
    for (const [i, port] of ports.entries()) {
      const text = [
        `follower_info 127.0.0.1:${port}`,
        ...ports.filter((p) => p !== port).map((p) => `follower_info 127.0.0.1:${p}`),
        `data_dir ${join(dir, `n${i}`)}`,
      ].join('\n');
      const node = new KvNode(parseConfig(text, `n${i}.conf`), SILENT_LOGGER);
      node.on_fatal = (error) => fatal.push(`node ${i}: ${error.message}`);
      nodes.push(node);
    }
    await Promise.all(nodes.map((n) => n.start()));
    const deadline = Date.now() + 10_000;
    let leader = -1;
    while (leader < 0 && Date.now() < deadline) {
      await sleep(50);
      leader = nodes.findIndex((n) => roleOf(n) === 'leader');
    }
    assert.ok(leader >= 0, 'a leader');
    client = new KvClient({ nodes: [`127.0.0.1:${ports[leader]}`], call_timeout_ms: 20_000 });
    let running = true;
    const writers = Array.from({ length: 50 }, async (_, w) => {
      for (let i = 0; running; i++) await client!.set(`k${w}`, `v${i}`).catch(() => undefined);
    });
    const follower = (leader + 1) % 3;
    // The follower's disk is slower (30 ms per save) than the leader's replication rate, as under
    // any steady write load on a
    // modest disk: every save finishes with new entries already waiting, so the follower is
    // persisting back to back.
    const follower_storage = (nodes[follower] as unknown as { storage: RaftStorage }).storage;
    const real_save = follower_storage.save.bind(follower_storage);
    follower_storage.save = (...args: Parameters<RaftStorage['save']>) =>
      real_save(...args).then(() => sleep(30));
    // Client connections on the node being stopped: listener.close() then takes a loop turn.
    const idle: net.Socket[] = [];
    for (let i = 0; i < 4; i++) {
      const s = net.connect({ host: '127.0.0.1', port: ports[follower]! });
      s.on('error', () => undefined);
      idle.push(s);
    }
    await sleep(1000);
    const stop_started = Date.now();
    await nodes[follower]!.stop();
    const stop_ms = Date.now() - stop_started;
    await sleep(200);
    running = false;
    await Promise.all(writers);
    assert.deepEqual(
      fatal,
      [],
      `the stopped node must not hit a fatal error during a graceful stop (stop took ${stop_ms} ms)`,
    );
    assert.ok(
      stop_ms < 5000,
      `stop() took ${stop_ms} ms: waitFor(!persisting) never sees a gap while saves run back to back`,
    );
  } finally {
    await client?.close();
    for (const n of nodes) await n.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('finding 1 (unit): a forward to a leader that accepted the connection but never answers settles once the leader moves elsewhere (retainOnly) or a deadline passes', {
  timeout: 20_000,
}, async () => {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => sockets.push(socket)); // accepts, reads nothing, answers nothing
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const forwarder = new LeaderForwarder(SILENT_LOGGER);
  try {
    const forwarded = forwarder.forward(
      '127.0.0.1',
      port,
      [Buffer.from('SET'), Buffer.from('k'), Buffer.from('v')],
      Date.now() + 60_000,
    );
    await sleep(100);
    forwarder.retainOnly('127.0.0.1:1'); // the leader moved elsewhere
    const outcome = await Promise.race([
      forwarded,
      sleep(3000).then(() => 'still pending after 3 s' as const),
    ]);
    assert.notEqual(
      outcome,
      'still pending after 3 s',
      'a forwarded request needs a deadline (or the link must be failed when the leader changes)',
    );
  } finally {
    forwarder.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test("finding 5 (unit): the server's shutting-down reply (certainly not executed) makes KvClient retry, not fail the call", () => {
  assert.notEqual(
    classifyErrorReply('TRYAGAIN shutting down; retry on another node').kind,
    'final',
  );
});

test('finding 6 (unit): the server\'s "-TIMEOUT request not served" (a write that certainly did not run) is not reported as outcome unknown', () => {
  // kv_node.dispatch returns this only after every attempt was refused or never sent (NOT_LEADER,
  // not_sent, no leader).
  assert.notEqual(
    classifyErrorReply('TRYAGAIN request not served within 10000 ms; it was not executed').kind,
    'outcome_unknown',
  );
});
