/**
 * The reply budget counts a reply's bytes before producing it, also when a pipeline writes a large
 * value and reads it in the same burst (the reads are dispatched before the write is applied, when
 * the node still holds the old, small value). In-process single node on real sockets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import { encodeCommand } from '../../src/resp/client_codec';
import { KvNode } from '../../src/server/kv_node';
import { LIMITS } from '../../src/util/limits';
import { SILENT_LOGGER } from '../../src/util/log';
import { freePortPairs } from '../support/ports';
import { waitFor } from '../support/wait';

const VALUE_BYTES = 2 * 1024 * 1024;
const GETS = 200;

function processed(node: KvNode): number {
  return Number(/total_commands_processed:(\d+)/.exec(node.info('stats'))?.[1] ?? 'NaN');
}

test('a SET of a large value and GETs of it in one unread pipeline stop at the reply share', {
  timeout: 120_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvraft-estimate-'));
  const [port] = await freePortPairs(1);
  const text = [`follower_info 127.0.0.1:${port}`, `data_dir ${join(dir, 'n')}`].join('\n');
  const node = new KvNode(parseConfig(text, 'n.conf'), SILENT_LOGGER);
  let socket: net.Socket | null = null;
  try {
    await node.start();
    await waitFor('leader', () => /role:leader/.test(node.info('raft')), 30_000);
    const client = net.connect({ host: '127.0.0.1', port: port ?? 0 });
    socket = client;
    client.on('error', () => undefined);
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    const before = processed(node);
    client.pause(); // the client reads none of its replies
    const burst = [encodeCommand(['SET', 'big', Buffer.alloc(VALUE_BYTES, 0x61)])];
    for (let i = 0; i < GETS; i++) burst.push(encodeCommand(['GET', 'big']));
    client.write(Buffer.concat(burst));
    await waitFor('the SET applied', () => /db0:keys=1/.test(node.info('keyspace')), 30_000);
    // Settled: the count stops moving once the connection holds its share of reply bytes.
    let last = -1;
    let stable_polls = 0;
    await waitFor(
      'the command count to settle',
      () => {
        const now = processed(node);
        stable_polls = now === last ? stable_polls + 1 : 0;
        last = now;
        return stable_polls >= 60;
      },
      30_000,
    );
    const gets_run = processed(node) - before - 1;
    // One share of replies, plus what the kernel's socket buffers took off it.
    const bound = Math.ceil(LIMITS.client_write_queue_bytes_max / VALUE_BYTES) + 16;
    console.log(`GETs run while the client read nothing: ${gets_run} of ${GETS} (bound ${bound})`);
    assert.ok(gets_run <= bound, `${gets_run} GETs of a ${VALUE_BYTES}-byte value were run`);
  } finally {
    socket?.destroy();
    await node.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});
