/**
 * The `kvcli` executable against real node processes: one-shot commands in
 * redis-cli's format and as JSON, exit statuses, a command session on a pipe,
 * failover between --nodes, and -MOVED redirects.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { join } from 'node:path';
import { pollUntil, REPO_ROOT, withCluster } from './cluster_harness';
import { runKvcliProcess, type KvcliRun } from '../support/kvcli_process';

const TEST_TIMEOUT_MS = 120_000;
const KVCLI_BIN = join(REPO_ROOT, 'kvcli');
/** A kvcli run that takes longer than this is killed and fails the test. */
const KVCLI_RUN_TIMEOUT_MS = 20_000;

/** Runs the repository's kvcli script with `args`, `input` on a pipe. */
function kvcli(args: readonly string[], input = ''): Promise<KvcliRun> {
  return runKvcliProcess(KVCLI_BIN, args, input, KVCLI_RUN_TIMEOUT_MS);
}

/** Asserts a run succeeded with exactly `stdout` and nothing on stderr. */
function assertPrinted(run: KvcliRun, stdout: string, code = 0): void {
  assert.deepEqual(
    { code: run.code, stdout: run.stdout, stderr: run.stderr },
    { code, stdout, stderr: '' },
  );
}

/** A loopback port nothing listens on (bound, then released). */
function deadAddress(): Promise<string> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address() as net.AddressInfo;
      server.close(() => resolve(`127.0.0.1:${address.port}`));
    });
  });
}

test('kvcli one-shot commands against a cluster: redis-cli output, --json, exit status', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    // A follower: every command below is forwarded to the leader.
    const port = String(cluster.nodes[(leader + 1) % 3]!.client_port);
    const p = ['-p', port];

    assertPrinted(await kvcli([...p, 'SET', 'CS06142', 'Cloud Computing']), 'OK\n');
    assertPrinted(await kvcli([...p, 'GET', 'CS06142']), '1) "Cloud"\n2) "Computing"\n');
    // The words are stored as the seed lab sends them, readable on every node.
    for (const node of cluster.nodes) {
      assertPrinted(
        await kvcli(['-h', '127.0.0.1', '-p', String(node.client_port), 'GET', 'CS06142']),
        '1) "Cloud"\n2) "Computing"\n',
      );
    }
    assertPrinted(await kvcli([...p, 'DEL', 'CS06142', 'never-set']), '(integer) 1\n');
    assertPrinted(await kvcli([...p, 'GET', 'CS06142']), '(nil)\n');
    assertPrinted(await kvcli([...p, 'GET', 'never-set']), '(nil)\n');
    assertPrinted(await kvcli([...p, 'DEL', 'CS06142']), '(integer) 0\n');
    assertPrinted(await kvcli([...p, 'PING']), 'PONG\n');

    const arity = await kvcli([...p, 'GET']);
    assert.equal(arity.code, 1, 'an error reply exits non-zero');
    assert.match(arity.stdout, /^\(error\) ERR wrong number of arguments for 'get' command\n$/i);
    const unknown = await kvcli([...p, 'NOSUCHCOMMAND']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stdout, /^\(error\) ERR unknown command/);

    const json = ['--json', ...p];
    assertPrinted(await kvcli([...json, 'SET', 'CS06142', 'Cloud Computing']), '"OK"\n');
    assert.deepEqual(JSON.parse((await kvcli([...json, 'GET', 'CS06142'])).stdout), [
      'Cloud',
      'Computing',
    ]);
    assertPrinted(await kvcli([...json, 'GET', 'never-set']), 'null\n');
    assertPrinted(await kvcli([...json, 'DEL', 'CS06142']), '1\n');
    const json_error = await kvcli([...json, 'GET']);
    assert.equal(json_error.code, 1);
    assert.match(
      (JSON.parse(json_error.stdout) as { error: string }).error,
      /^ERR wrong number of arguments/i,
    );
    const info = JSON.parse((await kvcli([...json, 'INFO'])).stdout) as Record<string, string>;
    assert.equal(info.role, 'follower');
    assert.equal(info.leader, cluster.address(leader));

    const usage = await kvcli(['-p', 'not-a-port', 'PING']);
    assert.equal(usage.code, 2, 'bad usage exits 2');
    assert.match(usage.stderr, /bad port/);
  });
});

test('kvcli reads a command session from a pipe: replies in order, no prompt, quit, exit status', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    await cluster.waitForLeader();
    const p = ['-p', String(cluster.nodes[0]!.client_port)];
    const session = [
      'SET CS06142 "Cloud Computing"',
      'GET CS06142',
      "SET greeting 'hello   world' again",
      '',
      'get greeting',
      'DEL CS06142 greeting missing',
      'GET CS06142',
      'PING',
    ].join('\n');
    assertPrinted(
      await kvcli(p, `${session}\n`),
      [
        'OK',
        '1) "Cloud"',
        '2) "Computing"',
        'OK',
        '1) "hello"',
        '2) "world"',
        '3) "again"',
        '(integer) 2',
        '(nil)',
        'PONG',
        '',
      ].join('\n'),
    );

    // A failed command is reported and the session goes on, but the exit status says so.
    const failing = await kvcli(p, 'GET\nSET after-error yes\nGET after-error\n');
    assert.equal(failing.code, 1);
    assert.match(
      failing.stdout,
      /^\(error\) ERR wrong number of arguments[^\n]*\nOK\n1\) "yes"\n$/i,
    );

    // quit ends the session: the SET after it is never sent.
    assertPrinted(await kvcli(p, 'SET quitting first\nquit\nSET quitting second\n'), 'OK\n');
    assertPrinted(await kvcli(p, 'GET quitting'), '1) "first"\n');

    const json = await kvcli(['--json', ...p], 'SET j a b\nGET j\nGET nothing\nDEL j\nGET\n');
    assert.equal(json.code, 1);
    const documents = json.stdout
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as unknown);
    assert.equal(documents.length, 5);
    assert.deepEqual(documents.slice(0, 4), ['OK', ['a', 'b'], null, 1]);
    assert.match((documents[4] as { error: string }).error, /^ERR wrong number of arguments/i);
  });
});

test('kvcli --nodes skips a dead first address; with every address dead it fails in bounded time', {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    await cluster.waitForLeader();
    const dead = await deadAddress();
    const nodes = ['--nodes', [dead, ...cluster.addresses()].join(',')];
    const set = await kvcli([...nodes, 'SET', 'via-nodes', 'still works']);
    assertPrinted(set, 'OK\n');
    assertPrinted(await kvcli([...nodes, 'GET', 'via-nodes']), '1) "still"\n2) "works"\n');
    // The dead address given with -p comes first too.
    const dead_port = dead.split(':')[1]!;
    assertPrinted(
      await kvcli(['-p', dead_port, '--nodes', cluster.address(1), 'GET', 'via-nodes']),
      '1) "still"\n2) "works"\n',
    );
    // A piped session fails over once and stays on the live node.
    assertPrinted(
      await kvcli(nodes, 'SET s1 one\nSET s2 two\nGET s1\nGET s2\n'),
      'OK\nOK\n1) "one"\n1) "two"\n',
    );

    const other_dead = await deadAddress();
    const nowhere = await kvcli([
      '--timeout',
      '1500',
      '--nodes',
      `${dead},${other_dead}`,
      'GET',
      'via-nodes',
    ]);
    assert.equal(nowhere.code, 1);
    assert.match(nowhere.stdout, /^\(error\) (ECONNECTION|ETIMEOUT) /);
    assert.ok(
      nowhere.elapsed_ms < 1500 + 5000,
      `gave up after ${Math.round(nowhere.elapsed_ms)} ms`,
    );
    t.diagnostic(
      `dead first address: SET took ${Math.round(set.elapsed_ms)} ms; every address ` +
        `dead: exit 1 after ${Math.round(nowhere.elapsed_ms)} ms: ${nowhere.stdout.trim()}`,
    );
  });
});

test('kvcli follows -MOVED to the leader, and to the new leader after kill -9 of the old one', {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  await withCluster({ nodes: 3, extra_config: ['client_redirect moved'] }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    const follower = (leader + 1) % 3;
    assertPrinted(
      await kvcli([
        '-p',
        String(cluster.nodes[follower]!.client_port),
        'SET',
        'moved',
        'by',
        'redirect',
      ]),
      'OK\n',
    );
    assertPrinted(
      await kvcli(['-p', String(cluster.nodes[follower]!.client_port), 'GET', 'moved']),
      '1) "by"\n2) "redirect"\n',
    );

    await cluster.kill(leader);
    const killed_at = performance.now();
    let attempts = 0;
    // The dead leader is listed first, as a stale configuration would have it.
    const nodes = ['--nodes', [cluster.address(leader), cluster.address(follower)].join(',')];
    const after = await pollUntil('kvcli to write through the new leader', 30_000, async () => {
      attempts += 1;
      const run = await kvcli([...nodes, '--timeout', '5000', 'SET', 'after-kill', 'yes']);
      return run.code === 0 ? run : null;
    });
    t.diagnostic(
      `MOVED: kvcli wrote through the new leader ${Math.round(performance.now() - killed_at)} ` +
        `ms after the kill (${attempts} run(s), the last took ${Math.round(after.elapsed_ms)} ms)`,
    );
    assertPrinted(after, 'OK\n');
    assertPrinted(await kvcli([...nodes, 'GET', 'moved']), '1) "by"\n2) "redirect"\n');
    assertPrinted(await kvcli([...nodes, 'GET', 'after-kill']), '1) "yes"\n');
  });
});
