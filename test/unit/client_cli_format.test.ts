import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { splitCommandLine } from '../../src/client/split_args';
import { formatReplyText, quoteBytes, replyToJson } from '../../src/client/reply_format';
import type { Reply } from '../../src/resp/client_codec';

const words = (line: string): string[] | null =>
  splitCommandLine(line)?.map((arg) => arg.toString('utf8')) ?? null;

test('splits on whitespace and honours redis-cli quoting', () => {
  assert.deepEqual(words('  SET   key  value '), ['SET', 'key', 'value']);
  assert.deepEqual(words('SET CS06142 "Cloud Computing"'), ['SET', 'CS06142', 'Cloud Computing']);
  assert.deepEqual(words(`GET 'a b' "c\\"d" 'it\\'s'`), ['GET', 'a b', 'c"d', "it's"]);
  assert.deepEqual(words('SET k "tab\\there\\nline\\\\ \\q"'), ['SET', 'k', 'tab\there\nline\\ q']);
  assert.deepEqual(words('SET k "\\x41\\x4a"'), ['SET', 'k', 'AJ']);
  assert.deepEqual(words('SET k ""'), ['SET', 'k', '']);
  assert.deepEqual(words('SET k foo"bar baz"'), ['SET', 'k', 'foobar baz']);
  assert.deepEqual(words('SET ключ "значение 😀"'), ['SET', 'ключ', 'значение 😀']);
  assert.deepEqual(words(''), []);
  assert.deepEqual(words('   '), []);
  assert.deepEqual(splitCommandLine('SET k "\\xff\\x00"')?.[2], Buffer.from([0xff, 0x00]));
});

test('rejects unbalanced quotes and text glued to a closing quote', () => {
  assert.equal(splitCommandLine('GET "abc'), null);
  assert.equal(splitCommandLine("GET 'abc"), null);
  assert.equal(splitCommandLine('GET "abc"def'), null);
  assert.equal(splitCommandLine("GET 'abc'def"), null);
  assert.equal(splitCommandLine('GET "abc\\"'), null);
});

test('property: quoteBytes of any bytes splits back to the same bytes (FC_SEED replays)', () => {
  const seed = process.env.FC_SEED === undefined ? Date.now() : Number(process.env.FC_SEED);
  try {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 20 }), { minLength: 1, maxLength: 5 }),
        (args) => {
          const line = args.map((arg) => quoteBytes(Buffer.from(arg))).join(' ');
          assert.deepEqual(
            splitCommandLine(line),
            args.map((arg) => Buffer.from(arg)),
          );
        },
      ),
      { seed, numRuns: 300 },
    );
  } catch (error) {
    console.error(`client_cli_format property failed; replay with FC_SEED=${seed}`);
    throw error;
  }
});

const bulk = (text: string): Reply => ({ type: 'bulk', value: Buffer.from(text) });

test('formats replies like redis-cli', () => {
  const get = { command: 'GET' };
  const other = { command: 'X' };
  assert.equal(formatReplyText({ type: 'simple', value: 'OK' }, other), 'OK');
  assert.equal(formatReplyText({ type: 'error', message: 'ERR bad' }, other), '(error) ERR bad');
  assert.equal(formatReplyText({ type: 'integer', value: 1 }, other), '(integer) 1');
  assert.equal(
    formatReplyText({ type: 'array', items: [bulk('Cloud'), bulk('Computing')] }, get),
    '1) "Cloud"\n2) "Computing"',
  );
  assert.equal(formatReplyText({ type: 'array', items: [bulk('nil')] }, get), '(nil)');
  assert.equal(formatReplyText({ type: 'array', items: [bulk('nil')] }, other), '1) "nil"');
  assert.equal(formatReplyText({ type: 'bulk', value: null }, other), '(nil)');
  assert.equal(formatReplyText({ type: 'array', items: null }, other), '(nil)');
  assert.equal(formatReplyText({ type: 'array', items: [] }, other), '(empty array)');
  assert.equal(
    formatReplyText(
      { type: 'bulk', value: Buffer.from([0x61, 0x22, 0x5c, 0x0a, 0x0d, 0x09, 0x00, 0xff, 0x7f]) },
      other,
    ),
    '"a\\"\\\\\\n\\r\\t\\x00\\xff\\x7f"',
  );
  assert.equal(
    formatReplyText(
      { type: 'array', items: [{ type: 'array', items: [bulk('a'), bulk('b')] }, bulk('c')] },
      other,
    ),
    '1) 1) "a"\n   2) "b"\n2) "c"',
  );
  const ten = Array.from({ length: 10 }, (_, i) => bulk(String(i)));
  assert.equal(formatReplyText({ type: 'array', items: ten }, other).split('\n')[0], ' 1) "0"');
  assert.equal(
    formatReplyText(bulk('# Raft\r\nrole:leader\r\n'), { command: 'INFO' }),
    '# Raft\nrole:leader',
  );
});

test('formats replies as JSON', () => {
  const get = { command: 'GET' };
  const other = { command: 'X' };
  assert.equal(JSON.stringify(replyToJson({ type: 'simple', value: 'OK' }, other)), '"OK"');
  assert.equal(JSON.stringify(replyToJson({ type: 'integer', value: 1 }, other)), '1');
  assert.equal(
    JSON.stringify(replyToJson({ type: 'array', items: [bulk('Cloud'), bulk('Computing')] }, get)),
    '["Cloud","Computing"]',
  );
  assert.equal(JSON.stringify(replyToJson({ type: 'array', items: [bulk('nil')] }, get)), 'null');
  assert.equal(
    JSON.stringify(replyToJson({ type: 'error', message: 'ERR x' }, other)),
    '{"error":"ERR x"}',
  );
  assert.equal(
    JSON.stringify(replyToJson({ type: 'bulk', value: Buffer.from([0xff]) }, other)),
    '{"base64":"/w=="}',
  );
  assert.deepEqual(replyToJson(bulk('# Raft\r\nrole:leader\r\nterm:2\r\n'), { command: 'INFO' }), {
    role: 'leader',
    term: '2',
  });
});
