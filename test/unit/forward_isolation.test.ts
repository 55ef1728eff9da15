/**
 * Forwarding isolation on real sockets (three in-process KvNodes): one client's slow request does
 * not delay other clients' requests relayed by the same follower, even clients whose requests
 * share a link to the leader, while each client keeps its own pipelined order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import type { Replica } from '../../src/replica/replica';
import { encodeCommand, ReplyParser } from '../../src/resp/client_codec';
import { KvNode } from '../../src/server/kv_node';
import { LIMITS } from '../../src/util/limits';
import { SILENT_LOGGER } from '../../src/util/log';
import { freePortPairs } from '../support/ports';
import { waitFor } from '../support/wait';

/** How long the leader holds the outcome of a write to the key `slow`. */
const SLOW_WRITE_MS = 2_000;

function roleOf(node: KvNode): string {
  return /role:(\w+)/.exec(node.info('raft'))?.[1] ?? '?';
}

/** A raw RESP connection: send commands, take replies in order. */
class RawClient {
  private readonly parser = new ReplyParser();
  private readonly replies: Buffer[] = [];
  private readonly waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const reply of this.parser.pushRaw(chunk)) this.replies.push(reply);
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  static async open(port: number): Promise<RawClient> {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    return new RawClient(socket);
  }

  send(...commands: string[][]): void {
    this.socket.write(Buffer.concat(commands.map((c) => encodeCommand(c))));
  }

  /** The next reply as text. */
  async next(): Promise<string> {
    for (;;) {
      const reply = this.replies.shift();
      if (reply !== undefined) return reply.toString('latin1');
      if (this.socket.destroyed) throw new Error('connection closed');
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

test('a slow write of one client does not hold other clients relayed by the same follower', {
  timeout: 120_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvraft-fwd-'));
  const ports = await freePortPairs(3);
  const nodes = ports.map((port, i) => {
    const text = [
      `follower_info 127.0.0.1:${port}`,
      ...ports.filter((p) => p !== port).map((p) => `follower_info 127.0.0.1:${p}`),
      `data_dir ${join(dir, `n${i}`)}`,
      'request_timeout_ms 20000',
    ].join('\n');
    return new KvNode(parseConfig(text, `n${i}.conf`), SILENT_LOGGER);
  });
  const clients: RawClient[] = [];
  try {
    await Promise.all(nodes.map((n) => n.start()));
    await waitFor('a leader', () => nodes.some((n) => roleOf(n) === 'leader'), 30_000);
    const leader = nodes.find((n) => roleOf(n) === 'leader');
    const follower_index = nodes.findIndex((n) => roleOf(n) === 'follower');
    assert.ok(leader !== undefined && follower_index >= 0);
    // The leader learns the outcome of a write to `slow` only SLOW_WRITE_MS late, as a write
    // waiting for a slow commit would.
    const replica = (leader as unknown as { replica: Replica }).replica;
    const real_write = replica.write.bind(replica);
    replica.write = (command, done) =>
      real_write(command, (outcome) => {
        const slow = command.op === 'set' && command.key.toString() === 'slow';
        if (slow) setTimeout(() => done(outcome), SLOW_WRITE_MS);
        else done(outcome);
      });
    // More clients than links, so that some share the slow client's link to the leader.
    const port = ports[follower_index] ?? 0;
    for (let i = 0; i <= LIMITS.forward_links_per_leader_max * 2; i++)
      clients.push(await RawClient.open(port));
    const [slow_client, ...others] = clients;
    assert.ok(slow_client !== undefined);
    // Warm the links (and the key) up first, so their opening is not measured.
    for (const client of clients) client.send(['SET', 'k', 'v']);
    for (const client of clients) assert.equal(await client.next(), '+OK\r\n');
    const started_ms = Date.now();
    // The slow client pipelines its slow write and a read of it: its own order must hold.
    slow_client.send(['SET', 'slow', 'v1'], ['GET', 'slow']);
    await new Promise((resolve) => setTimeout(resolve, 50));
    for (const client of others) client.send(['GET', 'k']);
    let latest_ms = 0;
    for (const client of others) {
      assert.equal(await client.next(), '*1\r\n$1\r\nv\r\n');
      latest_ms = Math.max(latest_ms, Date.now() - started_ms);
    }
    console.log(`other clients' GETs answered within ${latest_ms} ms of the slow write`);
    assert.ok(
      latest_ms < SLOW_WRITE_MS / 2,
      `${others.length} other clients waited ${latest_ms} ms behind one slow write`,
    );
    assert.equal(await slow_client.next(), '+OK\r\n');
    assert.equal(await slow_client.next(), '*1\r\n$2\r\nv1\r\n', 'the GET saw its own SET');
    assert.ok(Date.now() - started_ms >= SLOW_WRITE_MS, 'the slow write was slow');
  } finally {
    for (const client of clients) client.close();
    for (const n of nodes) await n.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});
