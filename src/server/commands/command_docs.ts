/**
 * What COMMAND, COMMAND INFO/DOCS/COUNT/LIST report: every command this server accepts, with
 * the arity and key positions clients use for routing and the summaries redis-cli shows in
 * `HELP` and its hints.
 */
import { DATA_COMMANDS } from '../../kv/redis_commands';
import { array, bulk, bulks, int, map, NULL, type RedisValue } from '../../resp/redis_value';

interface Doc {
  arity: number;
  group: string;
  summary: string;
  /** Argument words as in Redis's documentation; `[x]` optional. */
  syntax: string;
}

const DOCS: Record<string, Omit<Doc, 'arity'>> = {
  get: { group: 'string', summary: 'Returns the string value of a key.', syntax: 'key' },
  set: {
    group: 'string',
    summary: 'Sets the string value of a key, ignoring its type.',
    syntax: 'key value [NX|XX] [GET] [EX seconds|PX ms|EXAT unix-s|PXAT unix-ms|KEEPTTL]',
  },
  setnx: {
    group: 'string',
    summary: 'Set the value of a key only when it is absent.',
    syntax: 'key value',
  },
  setex: {
    group: 'string',
    summary: 'Sets a value and its expiry in seconds.',
    syntax: 'key seconds value',
  },
  psetex: {
    group: 'string',
    summary: 'Sets a value and its expiry in ms.',
    syntax: 'key milliseconds value',
  },
  getset: {
    group: 'string',
    summary: 'Sets a value, returns the previous one.',
    syntax: 'key value',
  },
  getdel: { group: 'string', summary: 'Returns the value of a key and deletes it.', syntax: 'key' },
  getex: {
    group: 'string',
    summary: 'Returns the value of a key and sets or clears its expiry.',
    syntax: 'key [EX seconds|PX ms|EXAT unix-s|PXAT unix-ms|PERSIST]',
  },
  mget: { group: 'string', summary: 'Returns the values of keys.', syntax: 'key [key ...]' },
  mset: { group: 'string', summary: 'Sets keys atomically.', syntax: 'key value [key value ...]' },
  msetnx: {
    group: 'string',
    summary: 'Sets keys only if none exists.',
    syntax: 'key value [key value ...]',
  },
  incr: { group: 'string', summary: 'Increments an integer value by one.', syntax: 'key' },
  decr: { group: 'string', summary: 'Decrements an integer value by one.', syntax: 'key' },
  incrby: { group: 'string', summary: 'Increments an integer value.', syntax: 'key increment' },
  decrby: { group: 'string', summary: 'Decrements an integer value.', syntax: 'key decrement' },
  append: { group: 'string', summary: 'Appends to the value of a key.', syntax: 'key value' },
  strlen: { group: 'string', summary: 'Returns the length of a value.', syntax: 'key' },
  exists: { group: 'generic', summary: 'Counts the keys that exist.', syntax: 'key [key ...]' },
  type: { group: 'generic', summary: 'Returns the type of a value.', syntax: 'key' },
  del: { group: 'generic', summary: 'Deletes keys.', syntax: 'key [key ...]' },
  unlink: { group: 'generic', summary: 'Deletes keys.', syntax: 'key [key ...]' },
  rename: { group: 'generic', summary: 'Renames a key.', syntax: 'key newkey' },
  renamenx: {
    group: 'generic',
    summary: 'Renames a key if the new name is free.',
    syntax: 'key newkey',
  },
  keys: { group: 'generic', summary: 'Returns the keys matching a pattern.', syntax: 'pattern' },
  scan: {
    group: 'generic',
    summary: 'Iterates over the keys.',
    syntax: 'cursor [MATCH pattern] [COUNT count] [TYPE type]',
  },
  expire: {
    group: 'generic',
    summary: 'Sets the expiry of a key in seconds.',
    syntax: 'key seconds [NX|XX|GT|LT]',
  },
  pexpire: {
    group: 'generic',
    summary: 'Sets the expiry of a key in ms.',
    syntax: 'key milliseconds [NX|XX|GT|LT]',
  },
  expireat: {
    group: 'generic',
    summary: 'Sets the expiry as a Unix time.',
    syntax: 'key unix-time-seconds [NX|XX|GT|LT]',
  },
  pexpireat: {
    group: 'generic',
    summary: 'Sets the expiry as a Unix time in ms.',
    syntax: 'key unix-time-ms [NX|XX|GT|LT]',
  },
  ttl: { group: 'generic', summary: 'Returns the seconds left until expiry.', syntax: 'key' },
  pttl: { group: 'generic', summary: 'Returns the ms left until expiry.', syntax: 'key' },
  expiretime: { group: 'generic', summary: 'Returns the expiry as a Unix time.', syntax: 'key' },
  pexpiretime: {
    group: 'generic',
    summary: 'Returns the expiry as a Unix time in ms.',
    syntax: 'key',
  },
  persist: { group: 'generic', summary: 'Removes the expiry of a key.', syntax: 'key' },
  flushdb: { group: 'server', summary: 'Deletes every key.', syntax: '[ASYNC|SYNC]' },
  flushall: { group: 'server', summary: 'Deletes every key.', syntax: '[ASYNC|SYNC]' },
  dbsize: { group: 'server', summary: 'Returns the number of keys.', syntax: '' },
  ping: { group: 'connection', summary: 'Returns the server liveliness.', syntax: '[message]' },
  echo: { group: 'connection', summary: 'Returns the given string.', syntax: 'message' },
  hello: {
    group: 'connection',
    summary: 'Handshakes with the server.',
    syntax: '[protover [AUTH username password] [SETNAME clientname]]',
  },
  client: { group: 'connection', summary: 'Connection commands.', syntax: 'subcommand [arg ...]' },
  select: {
    group: 'connection',
    summary: 'Changes the database (only 0 exists).',
    syntax: 'index',
  },
  reset: { group: 'connection', summary: 'Resets the connection.', syntax: '' },
  quit: { group: 'connection', summary: 'Closes the connection.', syntax: '' },
  auth: {
    group: 'connection',
    summary: 'Authenticates the connection.',
    syntax: '[username] password',
  },
  info: { group: 'server', summary: 'Returns information about the server.', syntax: '[section]' },
  time: { group: 'server', summary: 'Returns the server time.', syntax: '' },
  config: { group: 'server', summary: 'Reads configuration parameters.', syntax: 'GET parameter' },
  command: { group: 'server', summary: 'Returns command details.', syntax: '[subcommand]' },
  cluster: { group: 'cluster', summary: 'Cluster topology.', syntax: 'subcommand' },
  readonly: { group: 'cluster', summary: 'Allows reads from a replica.', syntax: '' },
  readwrite: { group: 'cluster', summary: 'Ends READONLY.', syntax: '' },
  multi: { group: 'transactions', summary: 'Starts a transaction.', syntax: '' },
  exec: { group: 'transactions', summary: 'Executes the queued commands.', syntax: '' },
  discard: { group: 'transactions', summary: 'Discards the queued commands.', syntax: '' },
  watch: { group: 'transactions', summary: 'Watches keys for EXEC.', syntax: 'key [key ...]' },
  unwatch: { group: 'transactions', summary: 'Forgets the watched keys.', syntax: '' },
};

/** Arity of the commands that are not data commands. */
const OTHER_ARITY: Record<string, number> = {
  ping: -1,
  echo: 2,
  hello: -1,
  client: -2,
  select: 2,
  reset: 1,
  quit: -1,
  auth: -2,
  info: -1,
  time: 1,
  config: -2,
  command: -1,
  cluster: -2,
  readonly: 1,
  readwrite: 1,
  multi: 1,
  exec: 1,
  discard: 1,
  watch: -2,
  unwatch: 1,
  scan: -2,
};

function docOf(name: string): Doc | null {
  const doc = DOCS[name];
  if (doc === undefined) return null;
  const arity = DATA_COMMANDS.get(name)?.arity ?? OTHER_ARITY[name];
  return arity === undefined ? null : { ...doc, arity };
}

export const COMMAND_NAMES: readonly string[] = Object.keys(DOCS).filter((n) => docOf(n) !== null);

function infoOf(name: string): RedisValue {
  const doc = docOf(name);
  if (doc === null) return NULL;
  const data = DATA_COMMANDS.get(name);
  const flags = data === undefined ? ['fast'] : data.kind === 'write' ? ['write'] : ['readonly'];
  const [first, last, step] = data?.keys ?? [
    name === 'watch' ? 1 : 0,
    name === 'watch' ? -1 : 0,
    name === 'watch' ? 1 : 0,
  ];
  return array([
    bulk(name),
    int(doc.arity),
    { t: 'array', items: flags.map((f) => ({ t: 'status', text: f })) },
    int(first),
    int(last),
    int(step),
    array([]),
    array([]),
    array([]),
    array([]),
  ]);
}

function argumentsOf(syntax: string): RedisValue {
  const words = syntax.split(' ').filter((w) => w !== '' && w !== '...]');
  return array(
    words.map((word) => {
      const optional = word.startsWith('[');
      const name = word.replace(/[[\]]/g, '').toLowerCase();
      const entries: [string, RedisValue][] = [
        ['name', bulk(name)],
        ['type', bulk(name === 'key' ? 'key' : 'string')],
        ['display_text', bulk(name)],
      ];
      if (optional) entries.push(['flags', bulks(['optional'])]);
      return map(entries);
    }),
  );
}

function docsEntry(name: string): [string, RedisValue] | null {
  const doc = docOf(name);
  if (doc === null) return null;
  return [
    name,
    map([
      ['summary', bulk(doc.summary)],
      ['since', bulk('1.0.0')],
      ['group', bulk(doc.group)],
      ['complexity', bulk('O(1)')],
      ['arguments', argumentsOf(doc.syntax)],
    ]),
  ];
}

/** COMMAND and its subcommands; `args[0]` is COMMAND. */
export function commandCommand(args: readonly Buffer[]): RedisValue {
  const sub = args[1]?.toString('latin1').toLowerCase();
  const names = args.slice(2).map((a) => a.toString('latin1').toLowerCase());
  switch (sub) {
    case undefined:
      return array(COMMAND_NAMES.map(infoOf));
    case 'count':
      return int(COMMAND_NAMES.length);
    case 'list':
      return bulks(COMMAND_NAMES);
    case 'info':
      return array((names.length === 0 ? COMMAND_NAMES : names).map(infoOf));
    case 'docs': {
      const entries = (names.length === 0 ? COMMAND_NAMES : names)
        .map(docsEntry)
        .filter((e): e is [string, RedisValue] => e !== null);
      return map(entries);
    }
    case 'getkeys':
      return { t: 'error', message: 'ERR COMMAND GETKEYS is not supported' };
    default:
      return {
        t: 'error',
        message: `ERR unknown subcommand '${sub.slice(0, 128)}'. Try COMMAND HELP.`,
      };
  }
}
