/**
 * Commands answered by the node a client is connected to, without the log: the handshake
 * (HELLO, CLIENT, SELECT, AUTH), introspection (COMMAND, CONFIG GET, TIME) and the cluster
 * topology (one shard holding every slot: the leader is its master, the others replicas).
 */
import type { NodeAddress, NodeConfig } from '../../config/config';
import {
  array,
  bulk,
  bulks,
  error,
  int,
  map,
  NULL,
  OK,
  status,
  type RedisValue,
} from '../../resp/redis_value';
import { globMatch } from '../../kv/glob';
import { CLUSTER_SLOTS, keySlot } from './cluster_slot';
import { REDIS_COMPAT_VERSION } from '../info';
import type { Session } from './session';

export interface ConnectionHost {
  readonly config: NodeConfig;
  connection_id: number;
  connection_remote: string;
  /** Null while no leader is known. */
  leader(): NodeAddress | null;
  isLeader(): boolean;
  /** Null when accepted, else the error reply (the hardening work fills this hook). */
  authenticate(user: string, password: Buffer): string | null;
}

export function hello(args: readonly Buffer[], session: Session, host: ConnectionHost): RedisValue {
  let next = 1;
  let resp = session.resp;
  if (args.length > 1) {
    const version = Number(args[1]?.toString('latin1'));
    if (version !== 2 && version !== 3) return error('NOPROTO unsupported protocol version');
    resp = version;
    next = 2;
  }
  let name: string | null = null;
  while (next < args.length) {
    const option = args[next]?.toString('latin1').toUpperCase();
    if (option === 'AUTH' && next + 2 < args.length) {
      const refused = host.authenticate(
        args[next + 1]?.toString('utf8') ?? '',
        args[next + 2] ?? Buffer.alloc(0),
      );
      if (refused !== null) return error(refused);
      next += 3;
    } else if (option === 'SETNAME' && next + 1 < args.length) {
      name = args[next + 1]?.toString('utf8') ?? '';
      if (/[\s]/.test(name))
        return error('ERR Client names cannot contain spaces, newlines or special characters.');
      next += 2;
    } else {
      return error(`ERR Syntax error in HELLO option '${option ?? ''}'`);
    }
  }
  // A client that says HELLO speaks Redis: the seed protocol has no HELLO.
  session.view = 'redis';
  session.resp = resp;
  if (name !== null) session.name = name;
  return map([
    ['server', bulk('redis')],
    ['version', bulk(REDIS_COMPAT_VERSION)],
    ['proto', int(resp)],
    ['id', int(host.connection_id)],
    ['mode', bulk('standalone')],
    ['role', bulk(host.isLeader() ? 'master' : 'replica')],
    ['modules', array([])],
  ]);
}

function clientLine(session: Session, host: ConnectionHost): string {
  const age_s = Math.floor((Date.now() - session.created_ms) / 1000);
  return (
    `id=${host.connection_id} addr=${host.connection_remote} laddr=` +
    `${host.config.self.host}:${host.config.self.client_port} fd=0 name=${session.name} ` +
    `age=${age_s} idle=0 flags=${session.multi === null ? 'N' : 'x'} db=0 sub=0 psub=0 ` +
    `ssub=0 multi=${session.multi?.length ?? -1} watch=${session.watch?.keys.length ?? 0} ` +
    `qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 ` +
    `events=r cmd=${session.last_command} user=default redir=-1 resp=${session.resp} ` +
    `lib-name=${session.lib_name} lib-ver=${session.lib_ver}\n`
  );
}

export function client(
  args: readonly Buffer[],
  session: Session,
  host: ConnectionHost,
): RedisValue {
  const sub = args[1]?.toString('latin1').toUpperCase() ?? '';
  const value = args[2]?.toString('utf8');
  switch (sub) {
    case 'SETNAME':
      if (value === undefined || args.length !== 3) return wrongArgs('client|setname');
      if (/[\s]/.test(value))
        return error('ERR Client names cannot contain spaces, newlines or special characters.');
      session.name = value;
      return OK;
    case 'GETNAME':
      return session.name === '' ? NULL : bulk(session.name);
    case 'SETINFO': {
      const attribute = value?.toUpperCase();
      const setting = args[3]?.toString('utf8');
      if (setting === undefined || args.length !== 4) return wrongArgs('client|setinfo');
      if (attribute === 'LIB-NAME') session.lib_name = setting;
      else if (attribute === 'LIB-VER') session.lib_ver = setting;
      else return error(`ERR Unrecognized option '${value ?? ''}'`);
      return OK;
    }
    case 'ID':
      return int(host.connection_id);
    case 'INFO':
      return { t: 'verbatim', text: clientLine(session, host) };
    case 'LIST':
      // Only the asking connection: other connections' details are not shared.
      return { t: 'verbatim', text: clientLine(session, host) };
    case 'NO-EVICT':
    case 'NO-TOUCH':
    case 'REPLY':
      return ['ON', 'OFF'].includes(value?.toUpperCase() ?? '') ? OK : error('ERR syntax error');
    default:
      return error(`ERR unknown subcommand '${sub.slice(0, 128)}'. Try CLIENT HELP.`);
  }
}

function wrongArgs(name: string): RedisValue {
  return error(`ERR wrong number of arguments for '${name}' command`);
}

export function select(args: readonly Buffer[]): RedisValue {
  const index = args[1]?.toString('latin1');
  if (index === '0') return OK;
  if (!/^-?[0-9]+$/.test(index ?? '')) return error('ERR value is not an integer or out of range');
  return error('ERR DB index is out of range');
}

export function time(): RedisValue {
  const now_us = BigInt(Date.now()) * 1000n + BigInt(Math.floor(performance.now() * 1000) % 1000);
  return bulks([String(now_us / 1_000_000n), String(now_us % 1_000_000n)]);
}

/** The read-only parameters clients and redis-benchmark ask for, with Redis's defaults. */
function configParameters(config: NodeConfig): [string, string][] {
  return [
    ['databases', '1'],
    ['maxclients', '10000'],
    ['maxmemory', '0'],
    ['maxmemory-policy', 'noeviction'],
    ['save', ''],
    ['appendonly', 'yes'],
    ['appendfsync', 'always'],
    ['timeout', '0'],
    ['port', String(config.self.client_port)],
    ['bind', config.self.host],
    ['cluster-enabled', 'no'],
    ['proto-max-bulk-len', String(512 * 1024 * 1024)],
    ['client-output-buffer-limit', 'normal 0 0 0 slave 0 0 0 pubsub 0 0 0'],
    ['slowlog-log-slower-than', '10000'],
    ['slowlog-max-len', '128'],
    ['lua-time-limit', '5000'],
    ['busy-reply-threshold', '5000'],
    ['notify-keyspace-events', ''],
    ['dir', config.data_dir],
  ];
}

export function configCommand(args: readonly Buffer[], host: ConnectionHost): RedisValue {
  const sub = args[1]?.toString('latin1').toUpperCase();
  if (sub === 'GET') {
    if (args.length < 3) return wrongArgs('config|get');
    const patterns = args.slice(2).map((a) => a.toString('latin1').toLowerCase());
    const found = configParameters(host.config).filter(([name]) =>
      patterns.some((p) => globMatch(p, name)),
    );
    return map(found.map(([name, value]) => [name, bulk(value)]));
  }
  if (sub === 'RESETSTAT') return OK;
  if (sub === 'SET' || sub === 'REWRITE')
    return error('ERR CONFIG SET is not supported: parameters come from the config file');
  return error(`ERR unknown subcommand '${sub ?? ''}'. Try CONFIG HELP.`);
}

// ------------------------------------------------------------------ cluster topology

function nodeName(id: number): string {
  // 40 hex characters, as Redis node ids are; stable per node id.
  return id.toString(16).padStart(40, '0');
}

/** Leader first (the master), then the others as its replicas. */
function shardMembers(host: ConnectionHost): { master: NodeAddress; replicas: NodeAddress[] } {
  const leader = host.leader() ?? host.config.self;
  return { master: leader, replicas: host.config.nodes.filter((n) => n.id !== leader.id) };
}

function clusterNodes(host: ConnectionHost): string {
  const { master, replicas } = shardMembers(host);
  const line = (node: NodeAddress, role: string): string => {
    const self = node.id === host.config.self.id ? 'myself,' : '';
    const slots = role === 'master' ? ` 0-${CLUSTER_SLOTS - 1}` : '';
    const of = role === 'master' ? '-' : nodeName(master.id);
    return (
      `${nodeName(node.id)} ${node.host}:${node.client_port}@${node.raft_port} ` +
      `${self}${role} ${of} 0 0 1 connected${slots}\n`
    );
  };
  return [line(master, 'master'), ...replicas.map((r) => line(r, 'slave'))].join('');
}

export function cluster(args: readonly Buffer[], host: ConnectionHost): RedisValue {
  const sub = args[1]?.toString('latin1').toUpperCase() ?? '';
  const { master, replicas } = shardMembers(host);
  const endpoint = (node: NodeAddress): RedisValue =>
    array([bulk(node.host), int(node.client_port), bulk(nodeName(node.id))]);
  switch (sub) {
    case 'SLOTS':
      return array([
        array([int(0), int(CLUSTER_SLOTS - 1), endpoint(master), ...replicas.map(endpoint)]),
      ]);
    case 'SHARDS': {
      const describe = (node: NodeAddress, role: string): RedisValue =>
        map([
          ['id', bulk(nodeName(node.id))],
          ['port', int(node.client_port)],
          ['ip', bulk(node.host)],
          ['endpoint', bulk(node.host)],
          ['role', bulk(role)],
          ['replication-offset', int(0)],
          ['health', bulk('online')],
        ]);
      return array([
        map([
          ['slots', array([int(0), int(CLUSTER_SLOTS - 1)])],
          [
            'nodes',
            array([describe(master, 'master'), ...replicas.map((r) => describe(r, 'replica'))]),
          ],
        ]),
      ]);
    }
    case 'NODES':
      return { t: 'verbatim', text: clusterNodes(host) };
    case 'MYID':
      return bulk(nodeName(host.config.self.id));
    case 'INFO':
      return {
        t: 'verbatim',
        text:
          `cluster_state:${host.leader() === null ? 'fail' : 'ok'}\r\n` +
          `cluster_slots_assigned:${CLUSTER_SLOTS}\r\ncluster_slots_ok:${CLUSTER_SLOTS}\r\n` +
          'cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n' +
          `cluster_known_nodes:${host.config.nodes.length}\r\ncluster_size:1\r\n` +
          'cluster_current_epoch:1\r\ncluster_my_epoch:1\r\n',
      };
    case 'KEYSLOT':
      return args.length === 3 ? int(keySlot(args[2] as Buffer)) : wrongArgs('cluster|keyslot');
    default:
      return error(`ERR unknown subcommand '${sub.slice(0, 128)}'. Try CLUSTER HELP.`);
  }
}

export const READONLY_REPLY: RedisValue = OK;
export const RESET_REPLY: RedisValue = status('RESET');
