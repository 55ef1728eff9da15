/**
 * TLS on both ports with throw-away certificates from openssl: redis-cli --tls through a follower
 * (the cluster can only elect and replicate if mutual TLS works on the Raft port, and the
 * follower's forward link is TLS too); a Raft connection without a client certificate, or with
 * one from another CA, is refused; a plain-TCP client gets nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import { pollUntil, TestCluster } from './cluster_harness';

const run = promisify(execFile);

async function openssl(dir: string, ...args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir });
}

/** A CA and one certificate it signs for 127.0.0.1 (server and client use). */
async function makeCa(dir: string, prefix: string): Promise<void> {
  await openssl(
    dir,
    ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${prefix}ca.key`],
    ...['-out', `${prefix}ca.pem`, '-days', '1', '-subj', `/CN=${prefix}test-ca`],
  );
  await openssl(
    dir,
    ...['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${prefix}node.key`],
    ...['-out', `${prefix}node.csr`, '-subj', '/CN=node'],
  );
  writeFileSync(
    join(dir, 'ext.cnf'),
    'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n',
  );
  await openssl(
    dir,
    ...['x509', '-req', '-in', `${prefix}node.csr`, '-CA', `${prefix}ca.pem`],
    ...['-CAkey', `${prefix}ca.key`, '-CAcreateserial', '-out', `${prefix}node.pem`],
    ...['-days', '1', '-extfile', 'ext.cnf'],
  );
}

async function cli(dir: string, port: number, ...args: string[]): Promise<string> {
  const { stdout, stderr } = await run('redis-cli', [
    ...['-p', String(port), '--tls', '--cacert', join(dir, 'ca.pem')],
    ...['--cert', join(dir, 'node.pem'), '--key', join(dir, 'node.key')],
    ...args,
  ]);
  return `${stderr}${stdout}`.trim();
}

/** Resolves 'refused' if the TLS connection fails or closes before `ms`, else 'open'. */
function tryTls(port: number, options: tls.ConnectionOptions, ms: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...options });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('open');
    }, ms);
    const refused = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve('refused');
    };
    // Under TLS 1.3 the server checks the client certificate after the client's handshake is
    // done: a refusal arrives as an alert and a close shortly after. Nothing is written, so an
    // open-mode peer port would just keep the connection waiting.
    socket.on('error', refused);
    socket.on('close', refused);
  });
}

test('TLS on both ports, mutual on the Raft port', { timeout: 120_000 }, async () => {
  const certs = mkdtempSync(join(tmpdir(), 'kvraft-tls-'));
  await makeCa(certs, '');
  await makeCa(certs, 'other-');
  const cluster = await TestCluster.create({
    nodes: 3,
    extra_config: [
      `tls_cert_file ${join(certs, 'node.pem')}`,
      `tls_key_file ${join(certs, 'node.key')}`,
      `tls_ca_file ${join(certs, 'ca.pem')}`,
    ],
  });
  try {
    cluster.startAll();
    const leader = await pollUntil(
      'a leader (over TLS)',
      20_000,
      async () => {
        for (const node of cluster.nodes) {
          const info = await cli(certs, node.client_port, 'INFO', 'raft').catch(() => '');
          if (/role:leader/.test(info)) return node.index;
        }
        return null;
      },
      100,
    );
    const follower = cluster.nodes[(leader + 1) % 3]!;
    assert.equal(await cli(certs, follower.client_port, 'SET', 'k', 'over-tls'), 'OK');
    assert.equal(await cli(certs, follower.client_port, 'GET', 'k'), 'over-tls');
    const ca = readFileSync(join(certs, 'ca.pem'));
    assert.equal(
      await tryTls(follower.raft_port, { ca, checkServerIdentity: () => undefined }, 2_000),
      'refused',
      'a Raft connection without a client certificate',
    );
    const other = {
      ca,
      cert: readFileSync(join(certs, 'other-node.pem')),
      key: readFileSync(join(certs, 'other-node.key')),
    };
    assert.equal(
      await tryTls(follower.raft_port, other, 2_000),
      'refused',
      'a Raft connection with a certificate from another CA',
    );
    // A plain-TCP client never gets a RESP reply.
    const plain = net.connect({ host: '127.0.0.1', port: follower.client_port });
    let received = '';
    plain.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
    });
    plain.on('error', () => undefined);
    plain.write('PING\r\n');
    await new Promise((resolve) => setTimeout(resolve, 500));
    plain.destroy();
    assert.equal(received.includes('PONG'), false);
    assert.equal(await cli(certs, follower.client_port, 'GET', 'k'), 'over-tls');
  } catch (error) {
    if (error instanceof Error) error.message += `\n${cluster.logs()}`;
    throw error;
  } finally {
    await cluster.destroy();
    rmSync(certs, { recursive: true, force: true });
  }
});
