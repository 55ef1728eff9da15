import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ClientClosedError,
  ConnectionError,
  KvClient,
  type KvClientOptions,
  NoLeaderError,
  OutcomeUnknownError,
  ProtocolError,
  QueueFullError,
  ServerError,
  TimeoutError,
} from '../../src/client';
import { SeededRandom } from '../../src/util/prng';
import {
  type FakeConnection,
  FakeServer,
  FakeStore,
  refusedAddress,
} from '../support/client_fake_server';
import { waitFor } from '../support/wait';

const seed =
  process.env.CLIENT_TEST_SEED === undefined
    ? Date.now() >>> 0
    : Number(process.env.CLIENT_TEST_SEED);
const random = new SeededRandom(seed);
process.on('exit', (code) => {
  if (code !== 0)
    console.error(`client_kv tests used jitter seed ${seed}; replay with CLIENT_TEST_SEED=${seed}`);
});

function makeClient(nodes: string[], options: Partial<KvClientOptions> = {}): KvClient {
  return new KvClient({
    nodes,
    backoff_base_ms: 5,
    backoff_max_ms: 50,
    random: () => random.float(),
    ...options,
  });
}

async function kvServer(): Promise<FakeServer> {
  const store = new FakeStore();
  return FakeServer.start((args) => store.handle(args));
}

async function rejectsWith<E extends Error>(
  promise: Promise<unknown>,
  type: new (...args: never[]) => E,
): Promise<E> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected ${type.name}, but the call succeeded`);
}

test('typed commands against a leader', async () => {
  const server = await kvServer();
  const client = makeClient([server.address]);
  try {
    assert.equal(await client.ping(), 'PONG');
    await client.set('CS06142', 'Cloud', 'Computing');
    assert.deepEqual(await client.get('CS06142'), ['Cloud', 'Computing']);
    assert.equal(await client.get('missing'), null);
    // The documented ambiguity: a stored single word "nil" reads like a missing key.
    await client.set('word', 'nil');
    assert.equal(await client.get('word'), null);
    await client.setBuffer(Buffer.from('bin'), [Buffer.from('a b'), Buffer.from('c')]);
    assert.deepEqual(await client.getBuffer(Buffer.from('bin')), [
      Buffer.from('a b'),
      Buffer.from('c'),
    ]);
    assert.equal(await client.del('CS06142', 'missing', 'word'), 2);
    assert.equal(await client.delBuffer(Buffer.from('bin')), 1);
    assert.deepEqual(await client.info(), { role: 'leader', term: '3', keys: '0' });
    const error = await rejectsWith(client.command(['FLY']), ServerError);
    assert.equal(error.code, 'ESERVER');
    assert.equal(error.prefix, 'ERR');
    assert.equal(error.reply, "ERR unknown command 'FLY'");
    assert.equal(server.count('FLY'), 1, 'a plain error is not retried');
  } finally {
    await client.close();
    await server.close();
  }
});

test('pipelined calls are matched to replies in order', async () => {
  // Replies go out in bursts of 7 so that several replies share one chunk and some cross chunks.
  let held: string[] = [];
  const store = new FakeStore();
  const server = await FakeServer.start((args, connection) => {
    held.push(store.handle(args));
    if (held.length === 7 || args.includes('flush')) {
      const burst = Buffer.from(held.join(''));
      held = [];
      const cut = Math.floor(burst.length / 3);
      connection.socket.write(burst.subarray(0, cut));
      connection.socket.write(burst.subarray(cut));
    }
    return undefined;
  });
  const client = makeClient([server.address]);
  try {
    const writes = Array.from({ length: 200 }, (_, i) => client.set(`k${i}`, `v${i}`, `w${i}`));
    writes.push(client.set('last', 'flush'));
    await Promise.all(writes);
    const reads = Array.from({ length: 200 }, (_, i) => client.get(`k${i}`));
    reads.push(client.get('flush'));
    const values = await Promise.all(reads);
    for (let i = 0; i < 200; i++) assert.deepEqual(values[i], [`v${i}`, `w${i}`]);
    assert.equal(server.connections.length, 1, 'all calls shared one connection');
  } finally {
    await client.close();
    await server.close();
  }
});

test('calls made in the same turn leave in one socket write', async () => {
  const server = await kvServer();
  const client = makeClient([server.address]);
  try {
    await client.ping();
    const writes_before = client.stats().socket_writes;
    const chunks_before = server.received.length;
    const calls = Array.from({ length: 50 }, (_, i) => client.set(`key${i}`, 'value'));
    await Promise.all(calls);
    assert.equal(client.stats().socket_writes - writes_before, 1);
    assert.equal(server.received.length - chunks_before, 1, 'the fake server saw one data event');
    assert.equal(server.count('SET'), 50);
  } finally {
    await client.close();
    await server.close();
  }
});

test('follows MOVED to the leader, learns it, and goes there directly afterwards', async () => {
  const leader = await kvServer();
  const follower = await FakeServer.start(() => `-MOVED 0 ${leader.address}\r\n`);
  const client = makeClient([follower.address]);
  try {
    await client.set('k', 'v');
    assert.deepEqual(await client.get('k'), ['v']);
    assert.equal(client.currentNode(), leader.address);
    assert.deepEqual(client.nodes(), [follower.address, leader.address]);
    assert.equal(follower.requests.length, 1, 'only the first call was redirected');
    assert.equal(client.stats().redirects, 1);
    // The follower connection is closed once it has nothing outstanding.
    await waitFor(
      'follower connection to close',
      () => client.stats().open_connections === 1,
      5000,
    );
  } finally {
    await client.close();
    await leader.close();
    await follower.close();
  }
});

test('a MOVED loop backs off and gives up within the deadline', async () => {
  const a = await FakeServer.start(() => `-MOVED 0 ${b.address}\r\n`);
  const b: FakeServer = await FakeServer.start(() => `-MOVED 0 ${a.address}\r\n`);
  const client = makeClient([a.address], { call_timeout_ms: 300 });
  try {
    const started = Date.now();
    const error = await rejectsWith(client.get('k'), Error);
    assert.ok(error instanceof NoLeaderError || error instanceof TimeoutError, String(error));
    assert.ok(Date.now() - started < 1000);
    assert.ok(a.requests.length + b.requests.length < 100, 'redirects were throttled');
  } finally {
    await client.close();
    await a.close();
    await b.close();
  }
});

test('fails over to the next node when one refuses connections', async () => {
  const dead = await refusedAddress();
  const server = await kvServer();
  const client = makeClient([dead, server.address]);
  try {
    await client.set('k', 'v');
    assert.deepEqual(await client.get('k'), ['v']);
    assert.equal(client.currentNode(), server.address);
  } finally {
    await client.close();
    await server.close();
  }
});

test('when every node refuses, a call fails with ConnectionError before its deadline', async () => {
  const client = makeClient([await refusedAddress(), await refusedAddress()], {
    call_timeout_ms: 1000,
  });
  try {
    const started = Date.now();
    const error = await rejectsWith(client.get('k'), ConnectionError);
    assert.equal(error.code, 'ECONNECTION');
    // It retries until the deadline; the slack is only for timers firing late on a busy machine.
    assert.ok(Date.now() - started <= 1300, 'settled at its deadline, not later');
  } finally {
    await client.close();
  }
});

test('a SET whose connection dies once it is sent is outcome unknown, not resent', async () => {
  const other = await kvServer();
  const server = await FakeServer.start((args, connection) => {
    if (args[0] === 'SET') connection.socket.destroy();
    return undefined;
  });
  const client = makeClient([server.address, other.address]);
  try {
    const error = await rejectsWith(client.set('k', 'v'), OutcomeUnknownError);
    assert.equal(error.code, 'EOUTCOMEUNKNOWN');
    assert.equal(error.reason, 'connection_lost');
    assert.equal(server.count('SET') + other.count('SET'), 1);
  } finally {
    await client.close();
    await server.close();
    await other.close();
  }
});

test('a GET, or a command marked idempotent, is resent after its connection dies', async () => {
  const store = new FakeStore();
  const killed = new Set<string>();
  const server = await FakeServer.start((args, connection) => {
    const name = args[0] ?? '';
    if (!killed.has(name)) {
      killed.add(name);
      connection.socket.destroy();
      return undefined;
    }
    return store.handle(args);
  });
  const client = makeClient([server.address]);
  try {
    assert.equal(await client.get('k'), null);
    assert.equal(server.count('GET'), 2);
    const reply = await client.command(['SET', 'k', 'v'], { idempotent: true });
    assert.deepEqual(reply, { type: 'simple', value: 'OK' });
    assert.equal(server.count('SET'), 2);
    assert.equal(server.connections.length, 3);
  } finally {
    await client.close();
    await server.close();
  }
});

test('-TIMEOUT outcome unknown: a SET fails as outcome unknown, a GET is retried', async () => {
  const store = new FakeStore();
  let timeouts_left = 2;
  const server = await FakeServer.start((args) => {
    if (timeouts_left > 0) {
      timeouts_left -= 1;
      return '-TIMEOUT outcome unknown: commit not confirmed\r\n';
    }
    return store.handle(args);
  });
  const client = makeClient([server.address]);
  try {
    const error = await rejectsWith(client.set('k', 'v'), OutcomeUnknownError);
    assert.equal(error.reason, 'server');
    assert.match(error.message, /TIMEOUT outcome unknown/);
    assert.equal(await client.get('k'), null);
    assert.equal(server.count('GET'), 2);
  } finally {
    await client.close();
    await server.close();
  }
});

test('CLUSTERDOWN moves to another node; TRYAGAIN retries the same node', async () => {
  const leader = await kvServer();
  const no_leader = await FakeServer.start(() => '-CLUSTERDOWN no leader elected yet\r\n');
  let again_left = 2;
  const store = new FakeStore();
  const busy = await FakeServer.start((args) => {
    if (again_left > 0) {
      again_left -= 1;
      return '-TRYAGAIN leadership transfer in progress\r\n';
    }
    return store.handle(args);
  });
  const client = makeClient([no_leader.address, leader.address]);
  const busy_client = makeClient([busy.address, leader.address]);
  try {
    await client.set('k', 'v');
    assert.equal(client.currentNode(), leader.address);
    await busy_client.set('k', 'v');
    assert.equal(busy_client.currentNode(), busy.address);
    assert.equal(busy.count('SET'), 3);
    assert.equal(leader.count('SET'), 1);
  } finally {
    await client.close();
    await busy_client.close();
    await leader.close();
    await no_leader.close();
    await busy.close();
  }
});

test('with no leader anywhere, the call fails with NoLeaderError', async () => {
  const a = await FakeServer.start(() => '-CLUSTERDOWN no leader\r\n');
  const b = await FakeServer.start(() => '-ERR no leader known\r\n');
  const client = makeClient([a.address, b.address], { call_timeout_ms: 300 });
  try {
    const error = await rejectsWith(client.set('k', 'v'), NoLeaderError);
    assert.equal(error.code, 'ENOLEADER');
    assert.ok(a.count('SET') >= 1 && b.count('SET') >= 1);
  } finally {
    await client.close();
    await a.close();
    await b.close();
  }
});

test('per-call deadline: TimeoutError for a read, outcome unknown for a sent write', async () => {
  const server = await FakeServer.start(() => undefined);
  const client = makeClient([server.address], { call_timeout_ms: 150 });
  try {
    const started = Date.now();
    const read = await rejectsWith(client.get('k'), TimeoutError);
    const elapsed = Date.now() - started;
    assert.equal(read.code, 'ETIMEOUT');
    assert.ok(elapsed >= 140 && elapsed < 1000, `took ${elapsed} ms`);
    const write = await rejectsWith(
      client.command(['SET', 'k', 'v'], { timeout_ms: 50 }),
      OutcomeUnknownError,
    );
    assert.equal(write.reason, 'timeout');
    assert.equal(client.stats().pending_calls, 0);
  } finally {
    await client.close();
    await server.close();
  }
});

test('a late reply to a timed-out call is dropped; the call behind it gets its own', async () => {
  const store = new FakeStore();
  store.handle(['SET', 'a', 'ay']);
  store.handle(['SET', 'b', 'bee']);
  const held: { connection: FakeConnection; reply: string }[] = [];
  const server = await FakeServer.start((args, connection) => {
    held.push({ connection, reply: store.handle(args) });
    return undefined;
  });
  const client = makeClient([server.address]);
  try {
    const a = client.command(['GET', 'a'], { timeout_ms: 50 });
    const b = client.get('b');
    await rejectsWith(a, TimeoutError);
    // Now answer both, in order: the reply meant for the abandoned call must not reach b.
    for (const { connection, reply } of held.splice(0)) connection.socket.write(reply);
    assert.deepEqual(await b, ['bee']);
    assert.equal(server.connections.length, 1, 'the connection with a live call stayed open');
  } finally {
    await client.close();
    await server.close();
  }
});

test('a connection whose every request timed out is dropped; the next reconnects', async () => {
  const store = new FakeStore();
  let silent = true;
  const server = await FakeServer.start((args) => (silent ? undefined : store.handle(args)));
  const client = makeClient([server.address]);
  try {
    await rejectsWith(client.command(['GET', 'a'], { timeout_ms: 50 }), TimeoutError);
    await waitFor(
      'the stuck connection to close',
      () => client.stats().open_connections === 0,
      5000,
    );
    silent = false;
    assert.equal(await client.get('a'), null);
    assert.equal(server.connections.length, 2);
  } finally {
    await client.close();
    await server.close();
  }
});

test('abandoned requests per connection are bounded', async () => {
  const server = await FakeServer.start(() => undefined);
  const client = makeClient([server.address], { pending_calls_max: 4 });
  try {
    // One live call keeps the connection current and open while others time out behind it.
    const live = client
      .command(['GET', 'live'], { timeout_ms: 60_000 })
      .catch((error: unknown) => error);
    for (let i = 0; i < 5; i++)
      await rejectsWith(client.command(['GET', `k${i}`], { timeout_ms: 20 }), TimeoutError);
    // The fifth abandoned request exceeds pending_calls_max (4): the connection is dropped and the
    // live GET retried.
    await waitFor(
      'a reconnect after the bound was hit',
      () => server.connections.length >= 2,
      5000,
    );
    await client.close();
    assert.ok((await live) instanceof ClientClosedError);
  } finally {
    await client.close();
    await server.close();
  }
});

test('the pending-call queue is bounded and close() settles every pending call', async () => {
  const server = await FakeServer.start(() => undefined);
  const client = makeClient([server.address], { pending_calls_max: 3, call_timeout_ms: 60_000 });
  const pending = [client.get('a'), client.set('b', 'x'), client.get('c')];
  const settled = Promise.allSettled(pending);
  try {
    const full = await rejectsWith(client.get('d'), QueueFullError);
    assert.equal(full.code, 'EQUEUEFULL');
    await waitFor('requests to arrive', () => server.requests.length === 3, 5000);
  } finally {
    await client.close();
  }
  const results = await settled;
  for (const result of results) {
    assert.equal(result.status, 'rejected');
    assert.ok(result.status === 'rejected' && result.reason instanceof ClientClosedError);
    assert.equal(result.reason.request_sent, true);
  }
  const after = await rejectsWith(client.ping(), ClientClosedError);
  assert.equal(after.code, 'ECLOSED');
  await server.close();
});

test('after close() the client holds no timers or sockets', async () => {
  const baseline = resourceCounts();
  const server = await FakeServer.start(() => undefined);
  const client = makeClient([server.address, await refusedAddress()], { call_timeout_ms: 60_000 });
  const calls = [client.get('a'), client.set('b', 'c'), client.command(['PING'])].map((call) =>
    call.catch((error: unknown) => error),
  );
  await waitFor('requests to arrive', () => server.requests.length === 3, 5000);
  await client.close();
  await server.close();
  for (const outcome of await Promise.all(calls)) assert.ok(outcome instanceof ClientClosedError);
  await waitFor(
    `resources back to baseline ${JSON.stringify(baseline)}, ` +
      `now ${JSON.stringify(resourceCounts())}`,
    () => sameCounts(resourceCounts(), baseline),
    5000,
  );
});

test('a wrong-type reply is a ProtocolError; garbage bytes break only that link', async () => {
  let garbage = true;
  const store = new FakeStore();
  const server = await FakeServer.start((args) => {
    if (args[0] === 'SET') return ':1\r\n';
    if (garbage) {
      garbage = false;
      return '!garbage\r\n';
    }
    return store.handle(args);
  });
  const client = makeClient([server.address]);
  try {
    const error = await rejectsWith(client.set('k', 'v'), ProtocolError);
    assert.equal(error.code, 'EPROTOCOL');
    // The unparsable reply kills the connection; the idempotent GET is retried on a new one.
    assert.equal(await client.get('k'), null);
    assert.equal(server.connections.length, 2);
  } finally {
    await client.close();
    await server.close();
  }
});

test('bad arguments are rejected before anything is sent', async () => {
  assert.throws(() => new KvClient({ nodes: [] }), /at least one node/);
  assert.throws(() => new KvClient({ nodes: ['nonsense'] }), /bad node address/);
  const client = new KvClient({ nodes: ['127.0.0.1:1', '[::1]:8001'] });
  assert.deepEqual(client.nodes(), ['127.0.0.1:1', '[::1]:8001']);
  await assert.rejects(client.command([]), { code: 'EINVALID' });
  await assert.rejects(client.set('k'), { code: 'EINVALID' });
  await assert.rejects(client.del(), { code: 'EINVALID' });
  assert.equal(client.stats().open_connections, 0);
  await client.close();
});

function resourceCounts(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of process.getActiveResourcesInfo()) {
    if (name === 'TTYWrap' || name === 'PipeWrap' || name === 'FSReqCallback') continue;
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

function sameCounts(a: Record<string, number>, b: Record<string, number>): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  // waitFor's own polling timer is allowed.
  return [...keys].every((key) => (a[key] ?? 0) - (key === 'Timeout' ? 1 : 0) <= (b[key] ?? 0));
}
