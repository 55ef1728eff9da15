/**
 * client_password_file end to end with redis-cli: NOAUTH before AUTH, WRONGPASS for a wrong
 * password, both AUTH forms, and writes through a follower (its forward link authenticates too).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TestCluster } from './cluster_harness';

const run = promisify(execFile);
const PASSWORD = 'correct horse battery staple';

async function cli(port: number, ...args: string[]): Promise<string> {
  // redis-cli reports a failed AUTH on stderr, then runs the command anyway.
  const { stdout, stderr } = await run('redis-cli', [
    '-p',
    String(port),
    '--no-auth-warning',
    ...args,
  ]);
  return `${stderr}${stdout}`.trim();
}

test('AUTH with client_password_file, through redis-cli -a', { timeout: 120_000 }, async () => {
  const secrets = mkdtempSync(join(tmpdir(), 'kvraft-auth-'));
  const password_file = join(secrets, 'client_password');
  const cluster = await TestCluster.create({
    nodes: 3,
    extra_config: [`client_password_file ${password_file}`],
  });
  writeFileSync(password_file, `${PASSWORD}\n`);
  try {
    cluster.startAll();
    // INFO needs AUTH too, so the harness cannot see the leader: find it with redis-cli.
    let leader_index = -1;
    for (let i = 0; leader_index < 0 && i < 200; i++) {
      for (const node of cluster.nodes) {
        const info = await cli(node.client_port, '-a', PASSWORD, 'INFO', 'raft').catch(() => '');
        if (/role:leader/.test(info)) leader_index = node.index;
      }
      if (leader_index < 0) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(leader_index >= 0, 'a leader');
    const follower = cluster.nodes[(leader_index + 1) % 3]!.client_port;
    assert.equal(await cli(follower, 'SET', 'a', '1'), 'NOAUTH Authentication required.');
    assert.equal(await cli(follower, 'GET', 'a'), 'NOAUTH Authentication required.');
    const wrong = await cli(follower, '-a', 'wrong', 'SET', 'a', '1');
    assert.match(wrong, /WRONGPASS invalid username-password pair or user is disabled\./);
    assert.match(wrong, /NOAUTH Authentication required\.$/, 'the SET after it is refused');
    assert.equal(await cli(follower, '-a', PASSWORD, 'SET', 'a', '1'), 'OK');
    assert.equal(await cli(follower, '--user', 'default', '--pass', PASSWORD, 'GET', 'a'), '1');
    assert.match(
      await cli(follower, '--user', 'other', '--pass', PASSWORD, 'GET', 'a'),
      /WRONGPASS invalid username-password pair or user is disabled\./,
    );
    // HELLO may authenticate by itself (the hook the Redis front end calls).
    assert.doesNotMatch(
      await cli(follower, 'HELLO', '2', 'AUTH', 'default', PASSWORD),
      /NOAUTH|WRONGPASS|ERR/,
    );
    assert.match(
      await cli(follower, 'HELLO', '2', 'AUTH', 'default', 'wrong'),
      /WRONGPASS invalid username-password pair or user is disabled\./,
    );
    assert.match(await cli(follower, 'HELLO', '2'), /NOAUTH Authentication required\./);
    assert.match(cluster.nodes[(leader_index + 1) % 3]!.stderr, /client AUTH failed from/);
  } catch (error) {
    if (error instanceof Error) error.message += `\n${cluster.logs()}`;
    throw error;
  } finally {
    await cluster.destroy();
    rmSync(secrets, { recursive: true, force: true });
  }
});
