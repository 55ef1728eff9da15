/** KvNode in-process: three nodes on loopback ports, driven through their public API. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import { KvNode } from '../../src/server/kv_node';
import type { RaftStorage } from '../../src/storage';
import { SILENT_LOGGER } from '../../src/util/log';
import { KvClient } from '../../src/client';
import { freePortPairs } from '../support/ports';
import { waitFor } from '../support/wait';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function roleOf(node: KvNode): string {
  return /role:(\w+)/.exec(node.info('raft'))?.[1] ?? '?';
}

function startNodes(dir: string, ports: number[], fatal: string[]): KvNode[] {
  return ports.map((port, i) => {
    const text = [
      `follower_info 127.0.0.1:${port}`,
      ...ports.filter((p) => p !== port).map((p) => `follower_info 127.0.0.1:${p}`),
      `data_dir ${join(dir, `n${i}`)}`,
    ].join('\n');
    const node = new KvNode(parseConfig(text, `n${i}.conf`), SILENT_LOGGER);
    node.on_fatal = (error) => fatal.push(`node ${i}: ${error.message}`);
    return node;
  });
}

test('a follower saving back to back stops promptly, with no save after storage close', {
  timeout: 90_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvraft-node-'));
  const ports = await freePortPairs(3);
  const fatal: string[] = [];
  const nodes = startNodes(dir, ports, fatal);
  let client: KvClient | null = null;
  try {
    await Promise.all(nodes.map((n) => n.start()));
    await waitFor('a leader', () => nodes.some((n) => roleOf(n) === 'leader'));
    const leader = nodes.findIndex((n) => roleOf(n) === 'leader');
    const writer_client = new KvClient({
      nodes: [`127.0.0.1:${ports[leader]}`],
      call_timeout_ms: 20_000,
    });
    client = writer_client;
    let running = true;
    let acknowledged = 0;
    const writers = Array.from({ length: 50 }, async (_, w) => {
      for (let i = 0; running; i++) {
        await writer_client.set(`k${w}`, `v${i}`).then(
          () => acknowledged++,
          () => undefined,
        );
      }
    });
    const follower = (leader + 1) % 3;
    // The follower's disk is slower (30 ms per save) than the leader's replication rate, as under
    // any steady write load on a modest disk: every save finishes with new entries already
    // waiting, so the follower is persisting back to back.
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
    await waitFor('steady replication', () => acknowledged >= 500, 30_000);
    const stop_started = Date.now();
    await nodes[follower]!.stop();
    const stop_ms = Date.now() - stop_started;
    // A save after close would fail a moment later: watch for it under the same load for a while.
    await sleep(200);
    running = false;
    await Promise.all(writers);
    for (const s of idle) s.destroy();
    assert.deepEqual(
      fatal,
      [],
      `the stopped node must not hit a fatal error ` +
        `during a graceful stop (stop took ${stop_ms} ms)`,
    );
    assert.ok(stop_ms < 5000, `stop() took ${stop_ms} ms while saves ran back to back`);
  } finally {
    await client?.close();
    for (const n of nodes) await n.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});
