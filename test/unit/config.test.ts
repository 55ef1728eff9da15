import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig, parseConfig, type NodeConfig } from '../../src/config/config';
import { ConfigError } from '../../src/util/errors';
import { LIMITS } from '../../src/util/limits';

const CWD = path.resolve('/srv/kv');

function parse(text: string): NodeConfig {
  return parseConfig(text, 'node.conf', CWD);
}

function assertConfigError(text: string, line: number | null, problem: RegExp): void {
  assert.throws(
    () => parse(text),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
      assert.equal(error.file, 'node.conf');
      assert.equal(error.line, line, error.message);
      assert.match(error.message, problem);
      assert.ok(
        error.message.startsWith(line === null ? 'node.conf: ' : `node.conf:${line}: `),
        error.message,
      );
      assert.equal(error.code, 'CONFIG_INVALID');
      return true;
    },
  );
}

const SEED_STYLE = [
  '!',
  '! Node 2 of a three-node cluster.',
  '!',
  'follower_info 127.0.0.1:8002',
  'follower_info 127.0.0.1:8001',
  'follower_info 127.0.0.1:8003',
  '',
].join('\n');

test('seed-style file: self is the first follower_info, defaults apply', () => {
  const config = parse(SEED_STYLE);
  assert.deepEqual(config.self, { id: 2, host: '127.0.0.1', client_port: 8002, raft_port: 7002 });
  assert.deepEqual(
    config.nodes.map((node) => [node.id, node.client_port, node.raft_port]),
    [
      [1, 8001, 7001],
      [2, 8002, 7002],
      [3, 8003, 7003],
    ],
  );
  assert.deepEqual(
    config.peers.map((node) => node.id),
    [1, 3],
  );
  assert.equal(config.data_dir, path.join(CWD, 'data', '127.0.0.1_8002'));
  assert.equal(config.client_redirect, 'forward');
  assert.equal(config.log_level, 'info');
  assert.equal(config.log_format, 'text');
  assert.equal(config.peer_hello, true);
  assert.equal(config.metrics_port, 0);
  assert.equal(config.ready_lag_entries, 1000);
  assert.equal(config.tick_ms, 50);
  assert.equal(config.election_ticks, 10);
  assert.equal(config.heartbeat_ticks, 2);
  assert.equal(config.no_leader_timeout_ms, 2000);
  assert.equal(config.request_timeout_ms, 10000);
});

test('ids agree across nodes whatever the line order in each file', () => {
  const addresses = [
    '10.0.0.2:9000',
    '9.255.255.255:9000',
    '10.0.0.2:12000',
    '10.0.0.10:2000',
    'localhost:5000',
  ];
  const expected_order = [
    '9.255.255.255:9000',
    '10.0.0.2:9000',
    '10.0.0.2:12000',
    '10.0.0.10:2000',
    '127.0.0.1:5000',
  ];
  const id_maps = addresses.map((self, index) => {
    const others = addresses.filter((address) => address !== self);
    // Each node's file lists itself first and its peers in a different rotation.
    const rotated = [
      ...others.slice(index % others.length),
      ...others.slice(0, index % others.length),
    ];
    const config = parse(
      [self, ...rotated].map((address) => `follower_info ${address}`).join('\n'),
    );
    assert.equal(config.nodes.length, 5);
    assert.equal(config.peers.length, 4);
    assert.ok(!config.peers.includes(config.self));
    return config.nodes.map((node) => `${node.id}=${node.host}:${node.client_port}`);
  });
  const expected = expected_order.map((address, index) => `${index + 1}=${address}`);
  for (const id_map of id_maps) assert.deepEqual(id_map, expected);
});

test('a single follower_info is a valid one-node cluster', () => {
  const config = parse('follower_info 192.168.1.5:6379\n');
  assert.deepEqual(config.self, { id: 1, host: '192.168.1.5', client_port: 6379, raft_port: 5379 });
  assert.deepEqual(config.peers, []);
  assert.deepEqual(config.nodes, [config.self]);
});

test('every parameter can be set; CRLF, tabs, indentation and trailing blanks are fine', () => {
  const text = [
    '\uFEFF! all parameters',
    '   ! indented comment',
    'follower_info\tlocalhost:8001  ',
    '  follower_info 127.0.0.2:8001',
    'data_dir relative/dir',
    'client_redirect moved',
    'log_level debug',
    'tick_ms 20',
    'election_ticks 15',
    'heartbeat_ticks 3',
    'no_leader_timeout_ms 500',
    'request_timeout_ms 3000',
    'log_format json',
    'peer_hello off',
    'metrics_port 9101',
    'ready_lag_entries 50',
    '',
  ].join('\r\n');
  const config = parse(text);
  assert.deepEqual(config.self, { id: 1, host: '127.0.0.1', client_port: 8001, raft_port: 7001 });
  assert.equal(config.data_dir, path.join(CWD, 'relative', 'dir'));
  assert.equal(config.client_redirect, 'moved');
  assert.equal(config.log_level, 'debug');
  assert.equal(config.log_format, 'json');
  assert.equal(config.peer_hello, false);
  assert.equal(config.metrics_port, 9101);
  assert.equal(config.ready_lag_entries, 50);
  assert.deepEqual(
    [
      config.tick_ms,
      config.election_ticks,
      config.heartbeat_ticks,
      config.no_leader_timeout_ms,
      config.request_timeout_ms,
    ],
    [20, 15, 3, 500, 3000],
  );
});

test('an absolute data_dir is kept', () => {
  const absolute = path.resolve('/var/lib/kv/node1');
  assert.equal(parse(`follower_info 127.0.0.1:8001\ndata_dir ${absolute}`).data_dir, absolute);
});

test('errors name the file, the line and the problem', () => {
  const node = 'follower_info 127.0.0.1:8001\n';
  const cases: [string, number | null, RegExp][] = [
    [`${node}colour blue`, 2, /unknown parameter 'colour'/],
    [`${node}tick_ms`, 2, /'tick_ms' has no value/],
    [`${node}follower_info`, 2, /'follower_info' has no value/],
    [`${node}tick_ms 10 20`, 2, /takes one value, got extra '20'/],
    [`${node}follower_info 127.0.0.1:8002 ! me`, 2, /extra '! me'/],
    [
      `${node}\nfollower_info 127.0.0.1:8001`,
      3,
      /duplicate address 127.0.0.1:8001 \(first on line 1\)/,
    ],
    [`${node}follower_info localhost:8001`, 2, /duplicate address 127.0.0.1:8001/],
    [`${node}follower_info 256.0.0.1:8002`, 2, /bad ip '256.0.0.1'/],
    [`${node}follower_info 1.2.3:8002`, 2, /bad ip/],
    [`${node}follower_info 01.2.3.4:8002`, 2, /bad ip/],
    [`${node}follower_info example.com:8002`, 2, /bad ip 'example.com'/],
    [`${node}follower_info [::1]:8002`, 2, /bad ip/],
    [`${node}follower_info 127.0.0.1`, 2, /not host:port/],
    [`${node}follower_info 127.0.0.1:80a2`, 2, /bad port '80a2'/],
    [`${node}follower_info 127.0.0.1:`, 2, /bad port ''/],
    [`${node}follower_info 127.0.0.1:-8002`, 2, /bad port '-8002'/],
    [`${node}follower_info 127.0.0.1:65536`, 2, /bad port 65536: more than 65535/],
    [`${node}follower_info 127.0.0.1:1000`, 2, /bad port 1000: the client port must exceed 1000/],
    ['! nothing here\n\n', null, /no 'follower_info' line/],
    [`${node}tick_ms 10\n\ntick_ms 10`, 4, /'tick_ms' given twice \(first on line 2\)/],
    [`${node}data_dir a\ndata_dir b`, 3, /'data_dir' given twice/],
    [`${node}tick_ms 0`, 2, /tick_ms must be an integer in 1\.\.60000, got '0'/],
    [`${node}tick_ms 999999999999`, 2, /tick_ms must be an integer/],
    [`${node}tick_ms 1.5`, 2, /tick_ms must be an integer/],
    [`${node}tick_ms -5`, 2, /tick_ms must be an integer/],
    [`${node}request_timeout_ms ten`, 2, /request_timeout_ms must be an integer/],
    [
      `${node}heartbeat_ticks 10`,
      2,
      /heartbeat_ticks \(10\) must be less than election_ticks \(10\)/,
    ],
    [
      `${node}heartbeat_ticks 3\nelection_ticks 3`,
      3,
      /heartbeat_ticks \(3\) must be less than election_ticks \(3\)/,
    ],
    [
      `${node}client_redirect proxy`,
      2,
      /client_redirect must be one of forward\|moved, got 'proxy'/,
    ],
    [`${node}log_level verbose`, 2, /log_level must be one of error\|warn\|info\|debug/],
    [`${node}log_format xml`, 2, /log_format must be one of text\|json, got 'xml'/],
    [`${node}peer_hello no`, 2, /peer_hello must be one of on\|off, got 'no'/],
    [
      `${node}cluster_secret_file s\npeer_hello off`,
      3,
      /peer_hello off needs open mode: cluster_secret_file requires the handshake/,
    ],
    [`${node}metrics_port 7001`, 2, /metrics_port 7001 is in use by this node/],
    [`${node}metrics_port 70000`, 2, /metrics_port must be an integer in 0\.\.65535/],
    [
      `${node}follower_info 127.0.0.1:7001`,
      2,
      /raft port 127.0.0.1:7001 of the node on line 1 is the client port of the node on line 2/,
    ],
    [
      `follower_info 127.0.0.1:7001\n${node}`,
      2,
      /raft port 127.0.0.1:7001 of the node on line 2 is the client port of the node on line 1/,
    ],
  ];
  for (const [text, line, problem] of cases) assertConfigError(text, line, problem);
});

test('the same ports on different ips do not clash', () => {
  const config = parse('follower_info 127.0.0.1:8001\nfollower_info 127.0.0.2:7001');
  assert.equal(config.nodes.length, 2);
});

test('more than cluster_nodes_max nodes is an error on the first line too many', () => {
  const lines: string[] = [];
  for (let i = 0; i <= LIMITS.cluster_nodes_max; i++)
    lines.push(`follower_info 10.0.0.1:${20001 + i}`);
  assertConfigError(
    lines.join('\n'),
    LIMITS.cluster_nodes_max + 1,
    /more than cluster_nodes_max \(64\) nodes/,
  );
  assert.equal(parse(lines.slice(0, -1).join('\n')).nodes.length, LIMITS.cluster_nodes_max);
});

function withTempDir(body: (dir: string) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kv-config-'));
  try {
    body(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('loadConfig reads a file and resolves data_dir against the process cwd', () => {
  withTempDir((dir) => {
    const file = path.join(dir, 'node1.conf');
    fs.writeFileSync(file, SEED_STYLE);
    const config = loadConfig(file);
    assert.equal(config.self.id, 2);
    assert.equal(config.data_dir, path.resolve(process.cwd(), 'data', '127.0.0.1_8002'));
  });
});

test('loadConfig reports the path of a bad file', () => {
  withTempDir((dir) => {
    const file = path.join(dir, 'bad.conf');
    fs.writeFileSync(file, 'follower_info 127.0.0.1:8001\nbogus 1\n');
    assert.throws(
      () => loadConfig(file),
      (error: unknown) => error instanceof ConfigError && error.file === file && error.line === 2,
    );
  });
});

test('loadConfig wraps read failures and refuses oversized files', () => {
  withTempDir((dir) => {
    const missing = path.join(dir, 'missing.conf');
    assert.throws(
      () => loadConfig(missing),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.file === missing &&
        error.line === null &&
        /cannot read/.test(error.message),
    );
    assert.throws(
      () => loadConfig(dir),
      (error: unknown) => error instanceof ConfigError && error.line === null,
    );

    const huge = path.join(dir, 'huge.conf');
    fs.writeFileSync(
      huge,
      `follower_info 127.0.0.1:8001\n${'!'.repeat(LIMITS.config_file_bytes_max)}\n`,
    );
    assert.throws(
      () => loadConfig(huge),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.line === null &&
        /config_file_bytes_max/.test(error.message),
    );

    const at_limit = path.join(dir, 'at_limit.conf');
    const head = 'follower_info 127.0.0.1:8001\n';
    fs.writeFileSync(at_limit, head + '!'.repeat(LIMITS.config_file_bytes_max - head.length));
    assert.equal(loadConfig(at_limit).self.client_port, 8001);
  });
});
