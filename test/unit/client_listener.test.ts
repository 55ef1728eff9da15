import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import {
  ClientListener,
  type ClientHandler,
  type ClientListenerOptions,
  type ClientReply,
} from '../../src/server/client_listener';
import { SILENT_LOGGER, type Logger, type LogLevel } from '../../src/util/log';
import { leakedHandles, waitFor } from '../support/wait';
import { countSocketWrites } from '../support/socket_writes';

const HOST = '127.0.0.1';

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
  await waitFor('no sockets, servers or timers left', () => leakedHandles().length === 0);
});

function command(...args: string[]): Buffer {
  const parts = [`*${args.length}\r\n`];
  for (const arg of args) parts.push(`$${Buffer.byteLength(arg)}\r\n${arg}\r\n`);
  return Buffer.from(parts.join(''));
}

function bulk(text: string): string {
  return `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
}

interface CapturedLine {
  level: LogLevel;
  message: string;
}

function capturingLogger(lines: CapturedLine[]): Logger {
  const push = (level: LogLevel) => (message: string) => lines.push({ level, message });
  return {
    error: push('error'),
    warn: push('warn'),
    info: push('info'),
    debug: push('debug'),
    enabled: () => true,
  };
}

class Deferred {
  resolve: (reply: ClientReply) => void = () => undefined;
  readonly promise = new Promise<ClientReply>((resolve) => {
    this.resolve = resolve;
  });
}

/**
 * Commands the tests speak: PING, ECHO x, SLOW x (reply deferred until the
 * test releases it), THROW, REJECT, QUIT, BIG n (an n-byte bulk reply).
 */
class TestHandler {
  readonly calls: string[] = [];
  readonly slow = new Map<string, Deferred>();

  readonly handle: ClientHandler = (args) => {
    const name = args[0]?.toString().toUpperCase() ?? '';
    const argument = args[1]?.toString() ?? '';
    this.calls.push(args.map((arg) => arg.toString()).join(' '));
    switch (name) {
      case 'PING':
        return { reply: Buffer.from('+PONG\r\n') };
      case 'ECHO':
        return { reply: Buffer.from(bulk(argument)) };
      case 'SLOW': {
        const deferred = new Deferred();
        this.slow.set(argument, deferred);
        return deferred.promise;
      }
      case 'THROW':
        throw new Error('handler bug');
      case 'REJECT':
        return Promise.reject(new Error('async handler bug'));
      case 'QUIT':
        return { reply: Buffer.from('+OK\r\n'), close_after: true };
      case 'BIG':
        return { reply: Buffer.from(bulk('x'.repeat(Number(argument)))) };
      default:
        return { reply: Buffer.from(`-ERR unknown command '${name}'\r\n`) };
    }
  };

  release(name: string, reply: string): void {
    const deferred = this.slow.get(name);
    assert.ok(deferred !== undefined, `SLOW ${name} was not called`);
    deferred.resolve({ reply: Buffer.from(reply) });
  }
}

async function startListener(
  handler: ClientHandler,
  overrides: Partial<ClientListenerOptions> = {},
): Promise<ClientListener> {
  const listener = new ClientListener(
    { host: HOST, port: 0, logger: SILENT_LOGGER, ...overrides },
    handler,
  );
  cleanups.push(() => listener.close());
  await listener.start();
  return listener;
}

/** A raw client that records every byte it gets back. */
class RawClient {
  readonly socket: net.Socket;
  private readonly chunks: Buffer[] = [];
  received_bytes = 0;
  closed = false;

  constructor(port: number, options: { read: boolean } = { read: true }) {
    this.socket = net.connect({ host: HOST, port });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
    });
    if (options.read) this.startReading();
    cleanups.push(async () => {
      if (this.closed) return;
      this.socket.destroy();
      await waitFor('client socket closed', () => this.closed);
    });
  }

  startReading(): void {
    this.socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.received_bytes += chunk.length;
    });
  }

  get text(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }

  async connected(): Promise<void> {
    if (!this.socket.connecting) return;
    await new Promise<void>((resolve) => this.socket.once('connect', () => resolve()));
  }

  async expect(expected: string): Promise<void> {
    await waitFor(
      `reply ${JSON.stringify(expected.slice(0, 200))}`,
      () => this.received_bytes >= Buffer.byteLength(expected),
    );
    assert.equal(this.text, expected);
  }
}

test('replies are written in request order even when handlers finish out of order', async () => {
  const handler = new TestHandler();
  const listener = await startListener(handler.handle);
  const client = new RawClient(listener.bound_port);
  const names = ['a', 'b', 'c', 'd', 'e'];
  client.socket.write(
    Buffer.concat([...names.map((name) => command('SLOW', name)), command('PING')]),
  );
  await waitFor('every handler called', () => handler.calls.length === 6);
  assert.deepEqual(handler.calls, ['SLOW a', 'SLOW b', 'SLOW c', 'SLOW d', 'SLOW e', 'PING']);

  // Later commands finish first; nothing may be written before 'a' is ready.
  for (const name of ['e', 'c', 'd', 'b']) handler.release(name, bulk(name));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(client.received_bytes, 0);
  handler.release('a', bulk('a'));
  await client.expect(`${names.map(bulk).join('')}+PONG\r\n`);
});

test('10,000 commands pipelined in one write get in-order replies in few writes', async (t) => {
  for (const pipeline_requests_max of [16 * 1024, 100]) {
    const handler = new TestHandler();
    const listener = await startListener(handler.handle, { pipeline_requests_max });
    const client = new RawClient(listener.bound_port);
    await client.connected();
    const count = 10_000;
    const requests: Buffer[] = [];
    const replies: string[] = [];
    for (let index = 0; index < count; index++) {
      requests.push(command('ECHO', String(index)));
      replies.push(bulk(String(index)));
    }
    const started_ms = performance.now();
    const { write_calls, writev_calls } = await countSocketWrites(async () => {
      client.socket.write(Buffer.concat(requests));
      await client.expect(replies.join(''));
    });
    const socket_writes = write_calls + writev_calls;
    t.diagnostic(
      `pipeline_requests_max ${pipeline_requests_max}: ${count} replies in ` +
        `${(performance.now() - started_ms).toFixed(1)} ms, ${socket_writes} socket writes`,
    );
    assert.equal(handler.calls.length, count);
    // One write per read chunk (or per pipeline refill), not one per reply.
    assert.ok(
      socket_writes < count / 20,
      `pipeline ${pipeline_requests_max}: ${socket_writes} socket writes for ${count} replies`,
    );
    client.socket.destroy();
    await listener.close();
  }
});

test('a protocol error after two commands: both replies, the error, then close', async () => {
  const handler = new TestHandler();
  const lines: CapturedLine[] = [];
  const listener = await startListener(handler.handle, { logger: capturingLogger(lines) });
  const client = new RawClient(listener.bound_port);
  client.socket.write(
    Buffer.concat([
      command('SLOW', 'first'),
      command('PING'),
      Buffer.from('*1\r\n$x\r\n'),
      command('PING'),
    ]),
  );
  await waitFor('the valid commands reach the handler', () => handler.calls.length === 2);
  handler.release('first', '+FIRST\r\n');
  await waitFor('connection closed', () => client.closed);
  assert.match(client.text, /^\+FIRST\r\n\+PONG\r\n-ERR Protocol error: [^\r\n]+\r\n$/);
  assert.deepEqual(handler.calls, ['SLOW first', 'PING']);
  assert.ok(lines.some((line) => line.level === 'debug' && /protocol error/i.test(line.message)));
  await waitFor('listener forgets the connection', () => listener.connection_count === 0);
});

test('an inline command from a raw socket', async () => {
  const handler = new TestHandler();
  const listener = await startListener(handler.handle);
  const client = new RawClient(listener.bound_port);
  client.socket.write('PING\r\n');
  await client.expect('+PONG\r\n');
  client.socket.write('ECHO hello\n');
  await client.expect(`+PONG\r\n${bulk('hello')}`);
});

test('a handler that throws or rejects gets -ERR internal error; the link lives on', async () => {
  const handler = new TestHandler();
  const lines: CapturedLine[] = [];
  const listener = await startListener(handler.handle, { logger: capturingLogger(lines) });
  const client = new RawClient(listener.bound_port);
  client.socket.write(
    Buffer.concat([
      command('THROW'),
      command('PING'),
      command('REJECT'),
      command('ECHO', 'still here'),
    ]),
  );
  await client.expect(
    `-ERR internal error\r\n+PONG\r\n-ERR internal error\r\n${bulk('still here')}`,
  );
  assert.equal(lines.filter((line) => line.level === 'error').length, 2);
  assert.ok(
    lines.some((line) => line.level === 'error' && line.message.includes('async handler bug')),
  );
  client.socket.write(command('PING'));
  await client.expect(
    `-ERR internal error\r\n+PONG\r\n-ERR internal error\r\n${bulk('still here')}+PONG\r\n`,
  );
  assert.equal(client.closed, false);
});

test('backpressure: a client that never reads cannot grow server memory unboundedly', async (t) => {
  const handler = new TestHandler();
  const pipeline_requests_max = 64;
  const write_queue_bytes_max = 64 * 1024;
  const reply_value_bytes = 4096;
  const listener = await startListener(handler.handle, {
    pipeline_requests_max,
    write_queue_bytes_max,
  });
  const client = new RawClient(listener.bound_port, { read: false });
  await client.connected();

  const count = 20_000;
  const one = command('BIG', String(reply_value_bytes));
  client.socket.write(Buffer.concat(Array.from({ length: count }, () => one)));
  // Reading paused shows from outside as the handler no longer being called while the client
  // still has thousands of commands queued: sample until the count has held still for a while.
  let calls_seen = -1;
  let samples_unchanged = 0;
  await waitFor('the server stops taking commands', () => {
    if (handler.calls.length === calls_seen) samples_unchanged++;
    else samples_unchanged = 0;
    calls_seen = handler.calls.length;
    return samples_unchanged >= 20;
  });
  // A server that kept reading would have run every command and queued every reply; one that
  // pauses holds what the kernel buffers took plus its own bounded pipeline and write queue.
  assert.ok(
    handler.calls.length < count,
    `all ${count} commands were handled while the client was not reading`,
  );
  const reply_bytes = bulk('x'.repeat(reply_value_bytes)).length;
  const held_bytes = handler.calls.length * reply_bytes;
  t.diagnostic(
    `paused after ${handler.calls.length}/${count} commands (${held_bytes} reply bytes written)`,
  );

  // Once the client reads, everything drains and every reply arrives.
  client.startReading();
  client.socket.resume();
  await waitFor('every reply arrives', () => client.received_bytes === count * reply_bytes, 30_000);
  assert.equal(handler.calls.length, count);
});

test('a close_after reply is written, then the connection closes; later ones unrun', async () => {
  const handler = new TestHandler();
  const listener = await startListener(handler.handle);
  const client = new RawClient(listener.bound_port);
  client.socket.write(Buffer.concat([command('PING'), command('QUIT'), command('PING')]));
  await waitFor('closed', () => client.closed);
  assert.equal(client.text, '+PONG\r\n+OK\r\n');
});

test('a client that half-closes after its commands still gets every reply', async () => {
  const handler = new TestHandler();
  const listener = await startListener(handler.handle);
  const client = new RawClient(listener.bound_port);
  client.socket.end(Buffer.concat([command('SLOW', 'x'), command('PING')]));
  await waitFor('handler called', () => handler.calls.length === 2);
  handler.release('x', '+X\r\n');
  await waitFor('closed', () => client.closed);
  assert.equal(client.text, '+X\r\n+PONG\r\n');
});

test('connections beyond connections_max are told so and closed', async () => {
  const handler = new TestHandler();
  const listener = await startListener(handler.handle, { connections_max: 1 });
  const first = new RawClient(listener.bound_port);
  await first.connected();
  await waitFor('first connection registered', () => listener.connection_count === 1);
  const second = new RawClient(listener.bound_port);
  await waitFor('second closed', () => second.closed);
  assert.equal(second.text, '-ERR max number of clients reached\r\n');
  first.socket.write(command('PING'));
  await first.expect('+PONG\r\n');
});

test('stopAccepting keeps existing connections; close destroys them', async () => {
  const handler = new TestHandler();
  const listener = await startListener(handler.handle);
  const port = listener.bound_port;
  const client = new RawClient(port);
  await client.connected();
  await waitFor('registered', () => listener.connection_count === 1);

  await listener.stopAccepting();
  const refused = await new Promise<string>((resolve) => {
    const socket = net.connect({ host: HOST, port });
    socket.on('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
  });
  assert.equal(refused, 'ECONNREFUSED');
  client.socket.write(command('PING'));
  await client.expect('+PONG\r\n');

  await listener.close();
  await waitFor('client sees the close', () => client.closed);
  assert.equal(listener.connection_count, 0);
});

test('start rejects with the listen error when the port is taken', async () => {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, HOST, resolve));
  cleanups.push(() => new Promise<void>((resolve) => holder.close(() => resolve())));
  const address = holder.address();
  assert.ok(address !== null && typeof address === 'object');
  const listener = new ClientListener(
    { host: HOST, port: address.port, logger: SILENT_LOGGER },
    new TestHandler().handle,
  );
  cleanups.push(() => listener.close());
  await assert.rejects(
    listener.start(),
    (error: NodeJS.ErrnoException) => error.code === 'EADDRINUSE',
  );
});

test('close() while start() is still listening closes the listener too', async () => {
  const listener = new ClientListener(
    { host: HOST, port: 0, logger: SILENT_LOGGER },
    new TestHandler().handle,
  );
  const starting = listener.start();
  await listener.close();
  await starting;
  // afterEach requires that no listener, socket or timer is left.
});

test('unparsed input of all connections shares one budget; the one over it is closed', async () => {
  const handler = new TestHandler();
  const listener = await startListener(handler.handle, { input_bytes_total_max: 1024 * 1024 });
  const first = new RawClient(listener.bound_port);
  const second = new RawClient(listener.bound_port);
  const partial = (bytes: number): Buffer =>
    Buffer.concat([
      Buffer.from(`*2\r\n$4\r\nECHO\r\n$${bytes}\r\n`),
      Buffer.alloc(bytes - 1, 0x61),
    ]);
  first.socket.write(partial(700_000));
  await waitFor('first partial request buffered', () => handler.calls.length === 0);
  await new Promise((resolve) => setTimeout(resolve, 50));
  second.socket.write(partial(700_000));
  await waitFor('second connection closed', () => second.closed);
  assert.match(second.text, /^-ERR client input memory budget exceeded/);
  // The first connection keeps its partial request and completes it.
  first.socket.write('a\r\n');
  await waitFor('first request ran', () => handler.calls.length === 1);
  await waitFor('first reply', () => first.received_bytes >= 700_000);
  assert.equal(first.closed, false);
});

test('a reply is charged from its estimate before the command runs', async () => {
  const handler = new TestHandler();
  const listener = await startListener(handler.handle, {
    estimate_reply_bytes: () => 1000,
    write_queue_bytes_max: 2500,
  });
  const client = new RawClient(listener.bound_port);
  const names = ['a', 'b', 'c', 'd', 'e'];
  client.socket.write(Buffer.concat(names.map((name) => command('SLOW', name))));
  // One share holds two 1000-byte estimates: the third waits for room.
  await waitFor('two handlers called', () => handler.calls.length === 2);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(handler.calls, ['SLOW a', 'SLOW b']);
  handler.release('a', bulk('a'));
  await waitFor('the third runs once the first is written', () => handler.calls.length === 3);
});

test('the process-wide reply budget pauses every connection until bytes drain', async () => {
  const handler = new TestHandler();
  const listener = await startListener(handler.handle, {
    estimate_reply_bytes: () => 1000,
    reply_bytes_total_max: 1500,
  });
  const first = new RawClient(listener.bound_port);
  first.socket.write(command('SLOW', 'a'));
  await waitFor('first handler called', () => handler.calls.length === 1);
  const second = new RawClient(listener.bound_port);
  second.socket.write(command('SLOW', 'b'));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(handler.calls, ['SLOW a']);
  handler.release('a', bulk('a'));
  await waitFor(
    'the second runs once the first reply is written',
    () => handler.calls.length === 2,
  );
});

test('connections that sent no command are capped; the oldest is closed', async () => {
  const handler = new TestHandler();
  const listener = await startListener(handler.handle, { connections_before_first_command_max: 2 });
  const oldest = new RawClient(listener.bound_port);
  await oldest.connected();
  const talker = new RawClient(listener.bound_port);
  talker.socket.write(command('PING'));
  await talker.expect('+PONG\r\n');
  const silent = new RawClient(listener.bound_port);
  await silent.connected();
  await waitFor('two connections', () => listener.connection_count === 3);
  assert.equal(oldest.closed, false);
  const newest = new RawClient(listener.bound_port);
  await newest.connected();
  await waitFor('the oldest silent connection closed', () => oldest.closed);
  assert.equal(silent.closed, false);
  assert.equal(talker.closed, false);
});

test('client_idle_timeout_ms closes an idle connection, not one awaiting a reply', async () => {
  const handler = new TestHandler();
  const listener = await startListener(handler.handle, { idle_timeout_ms: 100 });
  const idle = new RawClient(listener.bound_port);
  const waiting = new RawClient(listener.bound_port);
  waiting.socket.write(command('SLOW', 'a'));
  await waitFor('idle connection closed', () => idle.closed, 5_000);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(waiting.closed, false);
  handler.release('a', bulk('a'));
  await waiting.expect(bulk('a'));
  await waitFor('then it idles out too', () => waiting.closed, 5_000);
});
