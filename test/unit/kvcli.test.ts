import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { expandSetWords, main, parseCliArgs } from '../../src/cli/kvcli';
import { FakeServer, FakeStore, refusedAddress } from '../support/client_fake_server';
import { waitFor } from '../support/wait';
import { runKvcliProcess, type KvcliRun } from '../support/kvcli_process';

const KVCLI = path.resolve(__dirname, '../../src/cli/kvcli.js');

type Run = Omit<KvcliRun, 'elapsed_ms'>;

/** Runs the built kvcli with `node`, feeding `input` on a pipe; kills it after timeout_ms. */
async function runKvcli(args: string[], input = '', timeout_ms = 15_000): Promise<Run> {
  const { code, stdout, stderr } = await runKvcliProcess(KVCLI, args, input, timeout_ms);
  return { code, stdout, stderr };
}

async function withKvServer<T>(body: (server: FakeServer) => Promise<T>): Promise<T> {
  const store = new FakeStore();
  const server = await FakeServer.start((args) => store.handle(args));
  try {
    return await body(server);
  } finally {
    await server.close();
  }
}

test('SET with a quoted value sends the seed lab bytes: four bulk strings', async () => {
  await withKvServer(async (server) => {
    const run = await runKvcli(['-p', String(server.port)], 'SET CS06142 "Cloud Computing"\n');
    assert.equal(run.stdout, 'OK\n');
    assert.equal(run.code, 0);
    assert.equal(
      Buffer.concat(server.received).toString('latin1'),
      '*4\r\n$3\r\nSET\r\n$7\r\nCS06142\r\n$5\r\nCloud\r\n$9\r\nComputing\r\n',
    );
  });
});

test('one-shot commands print like redis-cli and set the exit code', async () => {
  await withKvServer(async (server) => {
    const port = ['-h', '127.0.0.1', '-p', String(server.port)];
    assert.deepEqual(await runKvcli([...port, 'SET', 'CS06142', 'Cloud Computing']), {
      code: 0,
      stdout: 'OK\n',
      stderr: '',
    });
    assert.deepEqual(await runKvcli([...port, 'GET', 'CS06142']), {
      code: 0,
      stdout: '1) "Cloud"\n2) "Computing"\n',
      stderr: '',
    });
    assert.deepEqual(await runKvcli([...port, 'GET', 'missing']), {
      code: 0,
      stdout: '(nil)\n',
      stderr: '',
    });
    assert.deepEqual(await runKvcli([...port, 'DEL', 'CS06142', 'missing']), {
      code: 0,
      stdout: '(integer) 1\n',
      stderr: '',
    });
    assert.deepEqual(await runKvcli([...port, 'PING']), { code: 0, stdout: 'PONG\n', stderr: '' });
    assert.deepEqual(await runKvcli([...port, 'NOPE']), {
      code: 1,
      stdout: "(error) ERR unknown command 'NOPE'\n",
      stderr: '',
    });
    const info = await runKvcli([...port, 'INFO']);
    assert.equal(info.code, 0);
    assert.match(info.stdout, /^# Raft\nrole:leader\n/);
  });
});

test('--json prints one JSON document per reply', async () => {
  await withKvServer(async (server) => {
    const run = await runKvcli(
      ['--json', '-p', String(server.port)],
      'SET k Cloud Computing\nGET k\nGET missing\nDEL k\nNOPE\nINFO\n',
    );
    assert.equal(run.code, 1, 'one command failed');
    assert.deepEqual(
      run.stdout
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line) as unknown),
      [
        'OK',
        ['Cloud', 'Computing'],
        null,
        1,
        { error: "ERR unknown command 'NOPE'" },
        { role: 'leader', term: '3', keys: '0' },
      ],
    );
  });
});

test('piped input: replies only, no prompt, help, quoting errors, quit stops reading', async () => {
  await withKvServer(async (server) => {
    const input =
      ['set k v1 v2', 'get k', '', 'get "k', 'help', "get 'k'", 'quit', 'get never'].join('\n') +
      '\n';
    const run = await runKvcli(['-p', String(server.port)], input);
    const lines = run.stdout.split('\n');
    assert.deepEqual(lines.slice(0, 4), [
      'OK',
      '1) "v1"',
      '2) "v2"',
      '(error) Invalid argument(s): unbalanced quotes',
    ]);
    assert.ok(run.stdout.includes('Commands:'));
    assert.ok(run.stdout.endsWith('1) "v1"\n2) "v2"\n'));
    assert.equal(run.code, 1, 'the unbalanced line counts as a failure');
    assert.equal(server.count('GET'), 2, 'nothing after quit was sent');
    assert.ok(!run.stdout.includes('> '));
  });
});

test('piped input without a trailing newline and with CRLF line endings', async () => {
  await withKvServer(async (server) => {
    const run = await runKvcli(['-p', String(server.port)], 'SET a b\r\nGET a');
    assert.deepEqual(run, { code: 0, stdout: 'OK\n1) "b"\n', stderr: '' });
  });
});

test('--nodes fails over past a dead node and follows MOVED', async () => {
  await withKvServer(async (leader) => {
    const follower = await FakeServer.start(() => `-MOVED 0 ${leader.address}\r\n`);
    try {
      const dead = await refusedAddress();
      const run = await runKvcli(['--nodes', `${dead},${follower.address}`], 'SET k v\nGET k\n');
      assert.deepEqual(run, { code: 0, stdout: 'OK\n1) "v"\n', stderr: '' });
      assert.equal(leader.count('SET'), 1);
    } finally {
      await follower.close();
    }
  });
});

test('failures: an unreachable node exits 1 with the error; bad usage exits 2', async () => {
  const dead = await refusedAddress();
  const unreachable = await runKvcli(['--nodes', dead, '--timeout', '3000', 'GET', 'k']);
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stdout, /^\(error\) ECONNECTION /);
  const json = await runKvcli(['--nodes', dead, '--timeout', '3000', '--json', 'GET', 'k']);
  assert.equal(json.code, 1);
  assert.equal((JSON.parse(json.stdout) as { code: string }).code, 'ECONNECTION');
  for (const args of [
    ['--bogus'],
    ['-p'],
    ['-p', 'abc'],
    ['--nodes', 'nonsense', 'PING'],
    ['--timeout', '0'],
  ]) {
    const run = await runKvcli(args);
    assert.equal(run.code, 2, `kvcli ${args.join(' ')}`);
    assert.match(run.stderr, /kvcli: /);
  }
  const help = await runKvcli(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: kvcli/);
});

test('parseCliArgs: -h/-p first, then --nodes; the command starts at the first non-option', () => {
  assert.deepEqual(parseCliArgs([]), {
    nodes: ['127.0.0.1:8001'],
    json: false,
    timeout_ms: 5000,
    command: [],
  });
  assert.deepEqual(
    parseCliArgs(['-p', '8002', '--nodes', '10.0.0.1:8001, 127.0.0.1:8002', 'GET', '-p']),
    {
      nodes: ['127.0.0.1:8002', '10.0.0.1:8001'],
      json: false,
      timeout_ms: 5000,
      command: ['GET', '-p'],
    },
  );
  assert.deepEqual(parseCliArgs(['--json', '-h', 'db', 'DEL', '-1']), {
    nodes: ['db:8001'],
    json: true,
    timeout_ms: 5000,
    command: ['DEL', '-1'],
  });
});

test('expandSetWords splits only SET values, and keeps empty values', () => {
  const text = (args: string[]): string[] =>
    expandSetWords(args.map((arg) => Buffer.from(arg))).map((arg) => arg.toString());
  assert.deepEqual(text(['SET', 'my key', 'Cloud  Computing', 'x']), [
    'SET',
    'my key',
    'Cloud',
    'Computing',
    'x',
  ]);
  assert.deepEqual(text(['set', 'k', '']), ['set', 'k', '']);
  assert.deepEqual(text(['GET', 'a b']), ['GET', 'a b']);
  assert.deepEqual(text(['DEL', 'a b', 'c']), ['DEL', 'a b', 'c']);
});

test('interactive mode on a terminal: prompt shows the node, history is saved', async () => {
  await withKvServer(async (server) => {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'client-kvcli-'));
    const history_file = path.join(directory, 'history');
    fs.writeFileSync(history_file, 'PING\n');
    const stdin = Object.assign(new PassThrough(), { isTTY: true });
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let output = '';
    stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
    const finished = main(['-p', String(server.port)], {
      stdin,
      stdout,
      stderr,
      env: { KVCLI_HISTFILE: history_file },
    });
    try {
      await waitFor('the first prompt', () => output.includes(`127.0.0.1:${server.port}> `), 5000);
      stdin.write('SET k "a b"\r');
      await waitFor('the SET reply', () => output.includes('OK'), 5000);
      stdin.write('GET k\r');
      await waitFor('the GET reply', () => output.includes('2) "b"'), 5000);
      stdin.write('quit\r');
      assert.equal(await finished, 0);
      assert.deepEqual(fs.readFileSync(history_file, 'utf8').split('\n'), [
        'PING',
        'SET k "a b"',
        'GET k',
        'quit',
        '',
      ]);
    } finally {
      stdin.end();
      fs.rmSync(directory, { recursive: true, force: true });
    }
  });
});
