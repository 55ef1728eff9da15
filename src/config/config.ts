/**
 * The node configuration file, in the seed's format.
 *
 * - A line whose first non-blank character is `!` is a comment; blank lines
 *   are ignored. Every other line is `name value`, separated by spaces or
 *   tabs. Trailing whitespace and CRLF line endings are fine; a value cannot
 *   contain spaces.
 * - `follower_info ip:port` (one or more): a node's CLIENT address. The first
 *   one is this node, the others are its peers. The node's Raft port is the
 *   client port − 1000, so the client port must be in 1001..65535. `ip` is an
 *   IPv4 dotted quad or `localhost` (read as 127.0.0.1).
 * - `data_dir PATH`: where this node keeps its log and snapshots. Default
 *   `./data/<ip>_<clientport>`. A relative path resolves against the
 *   process's working directory at start-up.
 * - `client_redirect forward|moved` (default `forward`): a follower forwards
 *   client writes to the leader, or replies `-MOVED`.
 * - `client_protocol seed|redis` (default `seed`): how a connection that has not sent
 *   `HELLO` sees values: the seed's byte-exact protocol (GET replies an array of words) or
 *   Redis's (GET replies one bulk string or null; SET takes options).
 * - `log_level error|warn|info|debug` (default `info`: start, role changes,
 *   peer up/down, recovery, shutdown; per-request detail is `debug`).
 * - `cluster_name NAME` (optional): part of the cluster fingerprint, so that two clusters with the
 *   same addresses (say, on different hosts' loopback) never talk to each other by mistake.
 * - `cluster_secret_file PATH` (optional): a file holding the secret every node of the cluster
 *   shares; with it, peers authenticate each other (see server/peer_handshake.ts). A relative
 *   path resolves against the process's working directory at start-up.
 * - `peer_hello on|off` (default `on`; open mode only): whether this node opens each Raft
 *   connection it dials with the optional Hello (fingerprint) frame. `off` keeps the seed's bare
 *   frames both ways, for peers of other implementations that do not skip an unknown first frame;
 *   config mismatches (and peers that lost their data directory) are then not detected on
 *   those links.
 * - `tls_cert_file`, `tls_key_file`, `tls_ca_file PATH` (optional, all three together): TLS on
 *   both ports; the Raft port is mutual TLS (peers check each other against the CA).
 * - `client_password_file PATH` (optional): a file holding the client password (trailing line
 *   ends ignored); clients must then `AUTH password` (or `AUTH default password`) first.
 * - `log_format text|json` (default `text`): `json` writes one object per line
 *   (`time`, `level`, `node`, `message`) for log shippers.
 * - `metrics_port` (default 0: off): serve Prometheus `/metrics`, `/health`
 *   and `/ready` over HTTP on this port of the node's own ip.
 * - `ready_lag_entries` (default 1000): `/ready` fails while this node's
 *   applied index is more than this many entries behind the leader's commit.
 * - Timing, positive integers: `tick_ms` (default 50), `election_ticks` (10),
 *   `heartbeat_ticks` (2, must be less than `election_ticks`),
 *   `no_leader_timeout_ms` (2000), `request_timeout_ms` (10000).
 * - `test_faults a,b,...` (TESTS ONLY; default none): break one safety rule
 *   each, so the chaos test can prove it notices: `serve_local_reads` (any
 *   node answers GET from its own state), `ack_before_fsync` (replicate and
 *   count entries before they are on disk), `skip_read_index` (a leader reads
 *   without confirming it still leads), `stale_leader_reads` (that, and an
 *   isolated leader keeps leading), `skip_incarnation_check` (a node that lost
 *   its data directory is not refused at the peer handshake).
 * - `test_synced_lengths on|off` and `test_fsync_delay_file PATH` (TESTS ONLY;
 *   default off, none): the node records how far each log file was
 *   fdatasync'd (`<file>.synced`), so a test can simulate a power loss; while
 *   PATH exists, every fdatasync first waits `min_ms max_ms` read from it (a
 *   slow disk). See src/storage/test_disk.ts.
 * - Snapshots: `snapshot_entries` (default 100000) and `snapshot_log_bytes`
 *   (default 64 MiB): a snapshot is taken once the log applied since the last
 *   one passes either (a count of entries, or bytes of entry data); the log is
 *   then compacted. 0 turns a threshold off. The defaults come from
 *   SNAPSHOT_DEFAULTS below (one switch: 'off' makes both 0).
 * - `client_idle_timeout_ms` (default 0: never, as Redis's `timeout 0`): close
 *   a client connection that sent nothing and awaits no reply for this long.
 * - `join host:port` (optional; also `--join host:port` on the command line): the client address
 *   of any member of a running cluster. At its first start (no node_id file in data_dir) the
 *   node asks the cluster to add it (RAFT.NODE ADD with its own client address, the first
 *   follower_info) instead of bootstrapping a configuration from the follower_info lines, and
 *   stores the id and cluster fingerprint it gets. Later starts use the stored identity; keep the
 *   line (a node without it is checked against the sorted-address ids).
 *
 * Every parameter except `follower_info` may appear at most once.
 *
 * Node ids: every node must derive the same id for the same address, however
 * its own file orders the lines. So all distinct addresses are sorted by IPv4
 * address (as a 32-bit number), then by client port, ascending; a node's id is
 * its 1-based position in that order (1..N).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatHostPort, parseHostPort } from '../util/address';
import { assert } from '../util/assert';
import { ConfigError, describeError } from '../util/errors';
import { LIMITS } from '../util/limits';
import { DEFAULT_LOG_LEVEL, type LogFormat, type LogLevel } from '../util/log';

export interface NodeAddress {
  id: number;
  host: string;
  client_port: number;
  raft_port: number;
}

export type ClientRedirect = 'forward' | 'moved';
export type ClientProtocol = 'seed' | 'redis';

export const TEST_FAULTS = [
  'serve_local_reads',
  'ack_before_fsync',
  'skip_read_index',
  'stale_leader_reads',
  'skip_incarnation_check',
] as const;
export type TestFault = (typeof TEST_FAULTS)[number];

export interface NodeConfig {
  self: NodeAddress;
  /** Every node but this one, sorted by id. */
  peers: NodeAddress[];
  /** All nodes, sorted by id. */
  nodes: NodeAddress[];
  /** Absolute path. */
  data_dir: string;
  client_redirect: ClientRedirect;
  client_protocol: ClientProtocol;
  log_level: LogLevel;
  log_format: LogFormat;
  /** Open mode: whether dialled Raft connections start with the optional Hello frame. */
  peer_hello: boolean;
  /** 0: no metrics listener. */
  metrics_port: number;
  ready_lag_entries: number;
  tick_ms: number;
  election_ticks: number;
  heartbeat_ticks: number;
  no_leader_timeout_ms: number;
  request_timeout_ms: number;
  /** Test-only safety breakers; empty in production. */
  test_faults: readonly TestFault[];
  /** Test-only disk hooks (src/storage/test_disk.ts); off and null in production. */
  test_synced_lengths: boolean;
  test_fsync_delay_file: string | null;
  /** 0: no entry-count threshold. */
  snapshot_entries: number;
  /** 0: no byte threshold. */
  snapshot_log_bytes: number;
  /** Close client connections idle this long; 0 (the default, as in Redis) never. */
  client_idle_timeout_ms: number;
  /** '' when not configured. */
  cluster_name: string;
  /** Absolute path, or null: peers are not authenticated (the seed's open protocol). */
  cluster_secret_file: string | null;
  /** Absolute path, or null: clients need no AUTH (the lab protocol has none). */
  client_password_file: string | null;
  /** `join`: a running cluster's member (client address) to join at first start; or null. */
  join: string | null;
  /** Absolute paths, all three or none: TLS on both ports (mutual on the Raft port). */
  tls_cert_file: string | null;
  tls_key_file: string | null;
  tls_ca_file: string | null;
}

/** The Raft port sits this far below the client port (the seed's rule). */
export const RAFT_PORT_OFFSET = 1000;

type IntegerParameter =
  | 'tick_ms'
  | 'election_ticks'
  | 'heartbeat_ticks'
  | 'no_leader_timeout_ms'
  | 'request_timeout_ms'
  | 'client_idle_timeout_ms'
  | 'metrics_port'
  | 'ready_lag_entries'
  | 'snapshot_entries'
  | 'snapshot_log_bytes';

interface IntegerRule {
  default_value: number;
  min: number;
  max: number;
}

/**
 * Snapshot thresholds by default. 'proposed': a snapshot every 100k entries (etcd's default
 * snapshot-count) or 64 MiB of entry data, whichever comes first: with 100-byte values the log
 * between snapshots stays around 15 MB, and a 1M-key state (~130 MB to snapshot, a few seconds
 * of background work) is snapshotted at most every 100k writes. 'off': no snapshots unless
 * configured.
 */
const SNAPSHOT_THRESHOLDS = {
  proposed: { entries: 100_000, log_bytes: 64 * 1024 * 1024 },
  off: { entries: 0, log_bytes: 0 },
} as const;
const SNAPSHOT_DEFAULTS: keyof typeof SNAPSHOT_THRESHOLDS = 'proposed';

/** Upper bounds catch typos (an extra zero or three) rather than encode a real limit. */
const INTEGER_RULES: Record<IntegerParameter, IntegerRule> = {
  tick_ms: { default_value: 50, min: 1, max: 60_000 },
  election_ticks: { default_value: 10, min: 2, max: 10_000 },
  heartbeat_ticks: { default_value: 2, min: 1, max: 10_000 },
  no_leader_timeout_ms: { default_value: 2_000, min: 1, max: 3_600_000 },
  request_timeout_ms: { default_value: 10_000, min: 1, max: 3_600_000 },
  client_idle_timeout_ms: { default_value: 0, min: 0, max: 31_536_000_000 },
  metrics_port: { default_value: 0, min: 0, max: 65_535 },
  ready_lag_entries: { default_value: 1_000, min: 0, max: 1_000_000_000 },
  snapshot_entries: {
    default_value: SNAPSHOT_THRESHOLDS[SNAPSHOT_DEFAULTS].entries,
    min: 0,
    max: 1_000_000_000,
  },
  snapshot_log_bytes: {
    default_value: SNAPSHOT_THRESHOLDS[SNAPSHOT_DEFAULTS].log_bytes,
    min: 0,
    max: 2 ** 40,
  },
};

const CLIENT_REDIRECTS: readonly ClientRedirect[] = ['forward', 'moved'];
const CLIENT_PROTOCOLS: readonly ClientProtocol[] = ['seed', 'redis'];
const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];
const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];
const ON_OFF: readonly ('on' | 'off')[] = ['on', 'off'];
const SINGLE_PARAMETERS = [
  'data_dir',
  'client_redirect',
  'client_protocol',
  'log_level',
  'cluster_name',
  'cluster_secret_file',
  'client_password_file',
  'tls_cert_file',
  'tls_key_file',
  'tls_ca_file',
  'log_format',
  'peer_hello',
  'test_faults',
  'test_synced_lengths',
  'test_fsync_delay_file',
  'join',
  ...Object.keys(INTEGER_RULES),
];

interface ListedNode {
  host: string;
  host_number: number;
  client_port: number;
  line: number;
}

/** Parses a config file's text. Pure apart from `cwd`, which defaults to the process's. */
export function parseConfig(
  text: string,
  file_name: string,
  cwd: string = process.cwd(),
): NodeConfig {
  const fail: Fail = (line, problem) => {
    throw new ConfigError(file_name, line, problem);
  };
  const listed: ListedNode[] = [];
  const single_values = new Map<string, { value: string; line: number }>();

  const lines = text.replace(/^\uFEFF/, '').split('\n');
  for (const [line_index, raw_line] of lines.entries()) {
    const line = line_index + 1;
    const content = raw_line.trim();
    if (content === '' || content.startsWith('!')) continue;
    const tokens = content.split(/\s+/);
    const name = tokens[0] ?? '';
    if (name !== 'follower_info' && !SINGLE_PARAMETERS.includes(name))
      fail(line, `unknown parameter '${name}'`);
    const value = tokens[1];
    if (value === undefined) fail(line, `parameter '${name}' has no value`);
    if (tokens.length > 2)
      fail(line, `parameter '${name}' takes one value, got extra '${tokens.slice(2).join(' ')}'`);

    if (name === 'follower_info') {
      listed.push(parseFollowerInfo(value, line, fail));
      if (listed.length > LIMITS.cluster_nodes_max)
        fail(line, `more than cluster_nodes_max (${LIMITS.cluster_nodes_max}) nodes`);
      continue;
    }
    const earlier = single_values.get(name);
    if (earlier !== undefined)
      fail(line, `parameter '${name}' given twice (first on line ${earlier.line})`);
    single_values.set(name, { value, line });
  }

  if (listed.length === 0) fail(null, "no 'follower_info' line: the first one names this node");
  checkAddressesDistinct(listed, fail);

  const nodes = assignIds(listed);
  const self_listed = listed[0];
  const self = nodes.find(
    (node) => node.host === self_listed?.host && node.client_port === self_listed.client_port,
  );
  assert(self !== undefined, 'the first follower_info is among the nodes');

  const integers = parseIntegers(single_values, fail);
  if (integers.heartbeat_ticks >= integers.election_ticks) {
    const lines_given = ['heartbeat_ticks', 'election_ticks'].map(
      (key) => single_values.get(key)?.line ?? 0,
    );
    fail(
      Math.max(...lines_given),
      `heartbeat_ticks (${integers.heartbeat_ticks}) must be ` +
        `less than election_ticks (${integers.election_ticks})`,
    );
  }

  checkMetricsPort(integers.metrics_port, self, single_values.get('metrics_port')?.line, fail);
  const data_dir_value =
    single_values.get('data_dir')?.value ?? path.join('data', `${self.host}_${self.client_port}`);
  return {
    self,
    peers: nodes.filter((node) => node !== self),
    nodes,
    data_dir: path.resolve(cwd, data_dir_value),
    client_redirect: parseChoice(
      single_values,
      'client_redirect',
      CLIENT_REDIRECTS,
      'forward',
      fail,
    ),
    client_protocol: parseChoice(single_values, 'client_protocol', CLIENT_PROTOCOLS, 'seed', fail),
    log_level: parseChoice(single_values, 'log_level', LOG_LEVELS, DEFAULT_LOG_LEVEL, fail),
    log_format: parseChoice(single_values, 'log_format', LOG_FORMATS, 'text', fail),
    ...integers,
    ...clusterIdentity(single_values, cwd, fail),
  };
}

/** `join host:port`: a member's client address (any host name; the port must be a client port). */
function parseJoin(given: { value: string; line: number } | undefined, fail: Fail): string | null {
  if (given === undefined) return null;
  const parsed = parseHostPort(given.value);
  if (!parsed.ok) return fail(given.line, `join ${parsed.problem}`);
  if (parsed.address.port <= RAFT_PORT_OFFSET)
    return fail(given.line, `join: client port ${parsed.address.port} must exceed 1000`);
  return formatHostPort(parsed.address);
}

/** `peer_hello on|off`; `off` only in open mode (a secret needs the handshake's frames). */
function parsePeerHello(values: Map<string, { value: string; line: number }>, fail: Fail): boolean {
  const hello = parseChoice(values, 'peer_hello', ON_OFF, 'on', fail) === 'on';
  const secret = values.get('cluster_secret_file');
  if (!hello && secret !== undefined) {
    const line = values.get('peer_hello')?.line ?? secret.line;
    return fail(line, 'peer_hello off needs open mode: cluster_secret_file requires the handshake');
  }
  return hello;
}

/** The cluster's identity, how peers open connections, and the test-only faults. */
function clusterIdentity(
  values: Map<string, { value: string; line: number }>,
  cwd: string,
  fail: Fail,
): Pick<
  NodeConfig,
  | 'cluster_name'
  | 'cluster_secret_file'
  | 'client_password_file'
  | 'tls_cert_file'
  | 'tls_key_file'
  | 'tls_ca_file'
  | 'test_faults'
  | 'peer_hello'
  | 'test_synced_lengths'
  | 'test_fsync_delay_file'
  | 'join'
> {
  const file = (name: string): string | null => {
    const value = values.get(name)?.value;
    return value === undefined ? null : path.resolve(cwd, value);
  };
  return {
    cluster_name: values.get('cluster_name')?.value ?? '',
    cluster_secret_file: file('cluster_secret_file'),
    client_password_file: file('client_password_file'),
    tls_cert_file: file('tls_cert_file'),
    tls_key_file: file('tls_key_file'),
    tls_ca_file: file('tls_ca_file'),
    test_faults: parseTestFaults(values.get('test_faults'), fail),
    peer_hello: parsePeerHello(values, fail),
    test_synced_lengths:
      parseChoice(values, 'test_synced_lengths', ['on', 'off'] as const, 'off', fail) === 'on',
    test_fsync_delay_file: file('test_fsync_delay_file'),
    join: parseJoin(values.get('join'), fail),
  };
}

function parseTestFaults(
  given: { value: string; line: number } | undefined,
  fail: Fail,
): TestFault[] {
  if (given === undefined) return [];
  return given.value.split(',').map((name) => {
    const fault = TEST_FAULTS.find((candidate) => candidate === name);
    if (fault === undefined)
      return fail(given.line, `test_faults: unknown fault '${name}' (${TEST_FAULTS.join('|')})`);
    return fault;
  });
}

/** Reads and parses a config file; read failures become ConfigError(path, null, ...). */
export function loadConfig(file_path: string): NodeConfig {
  let bytes: Buffer;
  try {
    bytes = readBounded(file_path, LIMITS.config_file_bytes_max);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(file_path, null, `cannot read: ${describeError(error)}`);
  }
  return parseConfig(bytes.toString('utf8'), file_path);
}

/** Reads at most `bytes_max` bytes, refusing a longer file without reading all of it. */
function readBounded(file_path: string, bytes_max: number): Buffer {
  const fd = fs.openSync(file_path, 'r');
  try {
    const buffer = Buffer.alloc(bytes_max + 1);
    let length = 0;
    for (;;) {
      const read = fs.readSync(fd, buffer, length, buffer.length - length, null);
      if (read === 0) break;
      length += read;
      if (length > bytes_max) {
        throw new ConfigError(
          file_path,
          null,
          `file is larger than config_file_bytes_max (${bytes_max} bytes)`,
        );
      }
    }
    return buffer.subarray(0, length);
  } finally {
    fs.closeSync(fd);
  }
}

type Fail = (line: number | null, problem: string) => never;

function parseFollowerInfo(value: string, line: number, fail: Fail): ListedNode {
  const parsed = parseHostPort(value);
  if (!parsed.ok) return fail(line, `follower_info ${parsed.problem}`);
  const host_text = parsed.address.host;
  const client_port = parsed.address.port;
  const host = host_text === 'localhost' ? '127.0.0.1' : host_text;
  const host_number = parseIpv4(host);
  if (host_number === null)
    return fail(line, `bad ip '${host_text}': expected an IPv4 dotted quad or localhost`);
  if (client_port <= RAFT_PORT_OFFSET) {
    fail(
      line,
      `bad port ${client_port}: the client port must exceed ${RAFT_PORT_OFFSET}` +
        ` (the Raft port is client port - ${RAFT_PORT_OFFSET})`,
    );
  }
  return { host, host_number, client_port, line };
}

/**
 * The address as an unsigned 32-bit number, or null if `text` is not a dotted quad (leading zeros
 * refused: some tools read them as octal).
 */
function parseIpv4(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let value = 0;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return null;
    const octet = Number(part);
    if (octet > 255) return null;
    value = value * 256 + octet;
  }
  return value;
}

function checkAddressesDistinct(listed: ListedNode[], fail: Fail): void {
  const by_address = new Map<string, ListedNode>();
  for (const node of listed) {
    const key = `${node.host}:${node.client_port}`;
    const earlier = by_address.get(key);
    if (earlier !== undefined)
      fail(node.line, `duplicate address ${key} (first on line ${earlier.line})`);
    by_address.set(key, node);
  }
  for (const node of listed) {
    const clash = by_address.get(`${node.host}:${node.client_port - RAFT_PORT_OFFSET}`);
    if (clash !== undefined) {
      fail(
        Math.max(node.line, clash.line),
        `raft port ${node.host}:${node.client_port - RAFT_PORT_OFFSET} of the node ` +
          `on line ${node.line} is the client port of the node on line ${clash.line}`,
      );
    }
  }
}

function checkMetricsPort(
  port: number,
  self: NodeAddress,
  line: number | undefined,
  fail: Fail,
): void {
  if (port !== 0 && (port === self.client_port || port === self.raft_port))
    fail(line ?? null, `metrics_port ${port} is in use by this node`);
}

function assignIds(listed: ListedNode[]): NodeAddress[] {
  const sorted = [...listed].sort(
    (a, b) => a.host_number - b.host_number || a.client_port - b.client_port,
  );
  return sorted.map((node, index) => ({
    id: index + 1,
    host: node.host,
    client_port: node.client_port,
    raft_port: node.client_port - RAFT_PORT_OFFSET,
  }));
}

function parseIntegers(
  values: Map<string, { value: string; line: number }>,
  fail: Fail,
): Record<IntegerParameter, number> {
  const result = {} as Record<IntegerParameter, number>;
  for (const [name, rule] of Object.entries(INTEGER_RULES) as [IntegerParameter, IntegerRule][]) {
    const given = values.get(name);
    if (given === undefined) {
      result[name] = rule.default_value;
      continue;
    }
    const number = /^[0-9]{1,10}$/.test(given.value) ? Number(given.value) : NaN;
    if (!(number >= rule.min && number <= rule.max)) {
      fail(
        given.line,
        `${name} must be an integer in ${rule.min}..${rule.max}, got '${given.value}'`,
      );
    }
    result[name] = number;
  }
  return result;
}

function parseChoice<T extends string>(
  values: Map<string, { value: string; line: number }>,
  name: string,
  choices: readonly T[],
  default_value: T,
  fail: Fail,
): T {
  const given = values.get(name);
  if (given === undefined) return default_value;
  const choice = choices.find((candidate) => candidate === given.value);
  if (choice === undefined)
    return fail(given.line, `${name} must be one of ${choices.join('|')}, got '${given.value}'`);
  return choice;
}
