import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseClientCommand } from '../../src/kv/client_command';

const args = (...parts: (string | Buffer)[]): Buffer[] => parts.map((part) => Buffer.from(part));

test('SET with one or more words is a write', () => {
  assert.deepEqual(parseClientCommand(args('SET', 'CS06142', 'Cloud', 'Computing')), {
    kind: 'write',
    command: { op: 'set', key: Buffer.from('CS06142'), words: args('Cloud', 'Computing') },
  });
  assert.deepEqual(parseClientCommand(args('set', 'k', '')), {
    kind: 'write',
    command: { op: 'set', key: Buffer.from('k'), words: args('') },
  });
});

test('DEL keeps every key as given, duplicates included', () => {
  assert.deepEqual(parseClientCommand(args('DEL', 'a', 'b', 'a')), {
    kind: 'write',
    command: { op: 'del', keys: args('a', 'b', 'a') },
  });
});

test('GET, PING, INFO, COMMAND, QUIT', () => {
  assert.deepEqual(parseClientCommand(args('GET', 'k')), { kind: 'read', key: Buffer.from('k') });
  assert.deepEqual(parseClientCommand(args('PING')), { kind: 'ping', message: null });
  assert.deepEqual(parseClientCommand(args('PING', 'hello')), {
    kind: 'ping',
    message: Buffer.from('hello'),
  });
  assert.deepEqual(parseClientCommand(args('INFO')), { kind: 'info', section: null });
  assert.deepEqual(parseClientCommand(args('INFO', 'Raft')), { kind: 'info', section: 'raft' });
  assert.deepEqual(parseClientCommand(args('COMMAND')), { kind: 'command_docs' });
  assert.deepEqual(parseClientCommand(args('COMMAND', 'DOCS')), { kind: 'command_docs' });
  assert.deepEqual(parseClientCommand(args('command', 'docs', 'get', 'set')), {
    kind: 'command_docs',
  });
  assert.deepEqual(parseClientCommand(args('QUIT')), { kind: 'quit' });
});

test('command names are case-insensitive', () => {
  for (const name of ['get', 'GET', 'Get', 'gEt']) {
    assert.deepEqual(parseClientCommand(args(name, 'k')), { kind: 'read', key: Buffer.from('k') });
  }
  assert.equal(parseClientCommand(args('sEt', 'k', 'v')).kind, 'write');
  assert.equal(parseClientCommand(args('Del', 'k')).kind, 'write');
  assert.equal(parseClientCommand(args('pInG')).kind, 'ping');
  assert.equal(parseClientCommand(args('quit')).kind, 'quit');
});

test('wrong arity gives Redis wording with the lowercase command name', () => {
  const cases: [Buffer[], string][] = [
    [args('SET'), 'set'],
    [args('SET', 'k'), 'set'],
    [args('DEL'), 'del'],
    [args('GET'), 'get'],
    [args('GET', 'a', 'b'), 'get'],
    [args('PING', 'a', 'b'), 'ping'],
    [args('INFO', 'a', 'b'), 'info'],
  ];
  for (const [request, name] of cases) {
    assert.deepEqual(parseClientCommand(request), {
      kind: 'error',
      message: `ERR wrong number of arguments for '${name}' command`,
    });
  }
});

test('unknown command echoes the name and the first arguments as Redis does', () => {
  assert.deepEqual(parseClientCommand(args('FOO', 'a')), {
    kind: 'error',
    message: "ERR unknown command 'FOO', with args beginning with: 'a' ",
  });
  assert.deepEqual(parseClientCommand(args('foo')), {
    kind: 'error',
    message: "ERR unknown command 'foo', with args beginning with: ",
  });
  assert.deepEqual(parseClientCommand(args('SETX', 'a', 'b')), {
    kind: 'error',
    message: "ERR unknown command 'SETX', with args beginning with: 'a' 'b' ",
  });
});

test('unknown command echo is bounded and stays on one line', () => {
  const long = 'x'.repeat(300);
  const result = parseClientCommand(args(long, 'a\r\nb', long, 'never shown'));
  assert.equal(result.kind, 'error');
  if (result.kind !== 'error') return;
  assert.ok(!/[\r\n]/.test(result.message));
  assert.ok(
    result.message.startsWith(
      `ERR unknown command '${'x'.repeat(128)}', with args beginning with: 'a  b' 'xxx`,
    ),
  );
  assert.ok(!result.message.includes('never shown'));
  assert.ok(result.message.length < 128 * 2 + 80);
});

test('unknown COMMAND subcommand', () => {
  assert.deepEqual(parseClientCommand(args('COMMAND', 'count')), {
    kind: 'error',
    message: "ERR unknown subcommand 'count'. Try COMMAND HELP.",
  });
});

test('an empty request is an error', () => {
  assert.deepEqual(parseClientCommand([]), { kind: 'error', message: 'ERR empty command' });
});

test('a name that is a known command plus bytes is unknown', () => {
  assert.equal(parseClientCommand(args('GETX', 'k')).kind, 'error');
  assert.equal(parseClientCommand(args(Buffer.from([0x67, 0x65, 0x74, 0x00]), 'k')).kind, 'error');
});
