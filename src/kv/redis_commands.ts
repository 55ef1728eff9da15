/**
 * The data commands of the Redis view, run by the state machine. Writes run
 * when their log entry is applied, at the entry's time (the state machine's
 * clock); reads run on the leader once a ReadIndex confirmed it, at the
 * leader's current time (never earlier than the clock). Both use the same
 * functions, so a write queued in MULTI and a direct one behave alike.
 *
 * Every function here is deterministic given the state and `now_ms`.
 */
import { LIMITS } from '../util/limits';
import { array, bulk, error, int, NULL, OK, status, type RedisValue } from '../resp/redis_value';
import type { KvCommand } from './command_codec';
import { globMatch } from './glob';
import type { KvStateMachine } from './state_machine';

export interface CommandContext {
  state: KvStateMachine;
  now_ms: number;
}

export interface DataCommandSpec {
  name: string;
  /** Redis convention: n > 0 exactly n arguments (name included), -n at least n. */
  arity: number;
  kind: 'write' | 'read';
  /** First key, last key (-1: the last argument), step, as COMMAND INFO reports them. */
  keys: [number, number, number];
  run(ctx: CommandContext, args: readonly Buffer[]): RedisValue;
}

export const SYNTAX_ERROR = error('ERR syntax error');
export const NOT_INTEGER = error('ERR value is not an integer or out of range');
const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);
const SPACE = Buffer.from(' ', 'latin1');

/** The value as the Redis view shows it: the words joined by single spaces. */
export function joinWords(words: readonly Buffer[]): Buffer {
  if (words.length === 1) return words[0] as Buffer;
  const parts: Buffer[] = [];
  words.forEach((word, i) => {
    if (i > 0) parts.push(SPACE);
    parts.push(word);
  });
  return Buffer.concat(parts);
}

function liveValue(ctx: CommandContext, key: Buffer): Buffer | null {
  const words = ctx.state.lookup(key, ctx.now_ms);
  return words === null ? null : joinWords(words);
}

function arg(args: readonly Buffer[], index: number): Buffer {
  return args[index] ?? Buffer.alloc(0);
}

function upper(buffer: Buffer | undefined): string {
  return buffer === undefined ? '' : buffer.toString('latin1').toUpperCase();
}

/** Redis's string2ll: an optional '-' and digits, no leading zeros or '+', within int64. */
export function parseInt64(buffer: Buffer): bigint | null {
  const text = buffer.toString('latin1');
  if (!/^-?(0|[1-9][0-9]{0,18})$/.test(text) || text === '-0') return null;
  const value = BigInt(text);
  return value > INT64_MAX || value < INT64_MIN ? null : value;
}

// ------------------------------------------------------------------ SET and friends

interface SetOptions {
  condition: 'NX' | 'XX' | null;
  get: boolean;
  /** null: clear; 'keep': KEEPTTL; number: absolute deadline. */
  deadline: number | null | 'keep';
}

/** Parses `SET` options from `args[3]` on; a RedisValue is the error to reply. */
function parseSetOptions(ctx: CommandContext, args: readonly Buffer[]): SetOptions | RedisValue {
  const options: SetOptions = { condition: null, get: false, deadline: null };
  let expiry_seen = false;
  for (let i = 3; i < args.length; i++) {
    const option = upper(args[i]);
    if ((option === 'NX' || option === 'XX') && options.condition === null) {
      options.condition = option;
    } else if (option === 'GET' && !options.get) {
      options.get = true;
    } else if (option === 'KEEPTTL' && !expiry_seen) {
      expiry_seen = true;
      options.deadline = 'keep';
    } else if (['EX', 'PX', 'EXAT', 'PXAT'].includes(option) && !expiry_seen) {
      expiry_seen = true;
      const amount = args[i + 1];
      if (amount === undefined) return SYNTAX_ERROR;
      i++;
      const deadline = deadlineFrom(ctx, option, amount, 'set');
      if (typeof deadline !== 'number') return deadline;
      options.deadline = deadline;
    } else {
      return SYNTAX_ERROR;
    }
  }
  return options;
}

/** An absolute deadline in ms from EX/PX/EXAT/PXAT and its amount, or the error reply. */
function deadlineFrom(
  ctx: CommandContext,
  unit: string,
  amount: Buffer,
  command: string,
): number | RedisValue {
  const value = parseInt64(amount);
  if (value === null) return NOT_INTEGER;
  if (value <= 0n) return error(`ERR invalid expire time in '${command}' command`);
  const ms = unit === 'EX' || unit === 'EXAT' ? value * 1000n : value;
  const deadline = unit === 'EX' || unit === 'PX' ? ms + BigInt(ctx.now_ms) : ms;
  if (deadline > BigInt(Number.MAX_SAFE_INTEGER))
    return error(`ERR invalid expire time in '${command}' command`);
  return Number(deadline);
}

function runSet(ctx: CommandContext, args: readonly Buffer[]): RedisValue {
  const options = parseSetOptions(ctx, args);
  if ('t' in options) return options;
  const key = arg(args, 1);
  const previous = liveValue(ctx, key);
  const reply = options.get ? (previous === null ? NULL : bulk(previous)) : OK;
  if (options.condition === 'NX' && previous !== null) return options.get ? reply : NULL;
  if (options.condition === 'XX' && previous === null) return NULL;
  const deadline = options.deadline === 'keep' ? ctx.state.deadlineOf(key) : options.deadline;
  ctx.state.put(key, [arg(args, 2)], deadline);
  return reply;
}

function runSetEx(unit: 'EX' | 'PX', name: string) {
  return (ctx: CommandContext, args: readonly Buffer[]): RedisValue => {
    const deadline = deadlineFrom(ctx, unit, arg(args, 2), name);
    if (typeof deadline !== 'number') return deadline;
    ctx.state.put(arg(args, 1), [arg(args, 3)], deadline);
    return OK;
  };
}

function runGetEx(ctx: CommandContext, args: readonly Buffer[]): RedisValue {
  const key = arg(args, 1);
  const value = liveValue(ctx, key);
  let deadline: number | null | 'keep' = 'keep';
  const option = upper(args[2]);
  if (args.length === 3 && option === 'PERSIST') deadline = null;
  else if (args.length === 4 && ['EX', 'PX', 'EXAT', 'PXAT'].includes(option)) {
    const parsed = deadlineFrom(ctx, option, arg(args, 3), 'getex');
    if (typeof parsed !== 'number') return parsed;
    deadline = parsed;
  } else if (args.length !== 2) return SYNTAX_ERROR;
  if (value === null) return NULL;
  if (deadline !== 'keep') ctx.state.setDeadline(key, deadline);
  return bulk(value);
}

function runMset(nx: boolean) {
  return (ctx: CommandContext, args: readonly Buffer[]): RedisValue => {
    if (args.length % 2 === 0)
      return error(`ERR wrong number of arguments for '${nx ? 'msetnx' : 'mset'}' command`);
    if (nx) {
      for (let i = 1; i < args.length; i += 2)
        if (liveValue(ctx, arg(args, i)) !== null) return int(0);
    }
    for (let i = 1; i < args.length; i += 2) ctx.state.put(arg(args, i), [arg(args, i + 1)], null);
    return nx ? int(1) : OK;
  };
}

function runIncrBy(sign: 1n | -1n, by_argument: boolean) {
  return (ctx: CommandContext, args: readonly Buffer[]): RedisValue => {
    const key = arg(args, 1);
    const delta = by_argument ? parseInt64(arg(args, 2)) : 1n;
    if (delta === null) return NOT_INTEGER;
    const current_bytes = liveValue(ctx, key);
    const current = current_bytes === null ? 0n : parseInt64(current_bytes);
    if (current === null) return NOT_INTEGER;
    const next = current + sign * delta;
    if (next > INT64_MAX || next < INT64_MIN)
      return error('ERR increment or decrement would overflow');
    const keep = current_bytes === null ? null : ctx.state.deadlineOf(key);
    ctx.state.put(key, [Buffer.from(next.toString(), 'latin1')], keep);
    return int(next);
  };
}

function runAppend(ctx: CommandContext, args: readonly Buffer[]): RedisValue {
  const key = arg(args, 1);
  const current = liveValue(ctx, key);
  const next = current === null ? arg(args, 2) : Buffer.concat([current, arg(args, 2)]);
  ctx.state.put(key, [next], current === null ? null : ctx.state.deadlineOf(key));
  return int(next.length);
}

function runDel(ctx: CommandContext, args: readonly Buffer[]): RedisValue {
  let removed = 0;
  for (let i = 1; i < args.length; i++) {
    const key = arg(args, i);
    const live = ctx.state.lookup(key, ctx.now_ms) !== null;
    if (ctx.state.remove(key) && live) removed++;
  }
  return int(removed);
}

function runRename(nx: boolean) {
  return (ctx: CommandContext, args: readonly Buffer[]): RedisValue => {
    const from = arg(args, 1);
    const to = arg(args, 2);
    const words = ctx.state.lookup(from, ctx.now_ms);
    if (words === null) return error('ERR no such key');
    if (nx && !from.equals(to) && ctx.state.lookup(to, ctx.now_ms) !== null) return int(0);
    if (from.equals(to)) return nx ? int(0) : OK;
    const deadline = ctx.state.deadlineOf(from);
    const copy = words.slice();
    ctx.state.remove(from);
    ctx.state.put(to, copy, deadline);
    return nx ? int(1) : OK;
  };
}

// ------------------------------------------------------------------ expiry

/** EXPIRE family: `unit` EX|PX|EXAT|PXAT; options NX XX GT LT. */
function runExpire(unit: 'EX' | 'PX' | 'EXAT' | 'PXAT', name: string) {
  return (ctx: CommandContext, args: readonly Buffer[]): RedisValue => {
    const amount = parseInt64(arg(args, 2));
    if (amount === null) return NOT_INTEGER;
    const flags = new Set(args.slice(3).map((a) => upper(a)));
    if ([...flags].some((f) => !['NX', 'XX', 'GT', 'LT'].includes(f))) {
      return error(
        `ERR Unsupported option ${args
          .slice(3)
          .map((a) => a.toString())
          .join(' ')}`,
      );
    }
    if (flags.has('NX') && flags.size > 1)
      return error('ERR NX and XX, GT or LT options at the same time are not compatible');
    if (flags.has('GT') && flags.has('LT'))
      return error('ERR GT and LT options at the same time are not compatible');
    const ms = unit === 'EX' || unit === 'EXAT' ? amount * 1000n : amount;
    const deadline_big = unit === 'EX' || unit === 'PX' ? ms + BigInt(ctx.now_ms) : ms;
    if (deadline_big > BigInt(Number.MAX_SAFE_INTEGER) || deadline_big < -INT64_MAX)
      return error(`ERR invalid expire time in '${name}' command`);
    const key = arg(args, 1);
    if (ctx.state.lookup(key, ctx.now_ms) === null) return int(0);
    const current = ctx.state.deadlineOf(key);
    const deadline = Number(deadline_big);
    if (flags.has('NX') && current !== null) return int(0);
    if (flags.has('XX') && current === null) return int(0);
    // No deadline counts as infinite for GT/LT, as in Redis.
    if (flags.has('GT') && (current === null || deadline <= current)) return int(0);
    if (flags.has('LT') && current !== null && deadline >= current) return int(0);
    if (deadline <= ctx.now_ms) ctx.state.remove(key);
    else ctx.state.setDeadline(key, deadline);
    return int(1);
  };
}

function runTtl(unit_ms: 1 | 1000, absolute: boolean) {
  return (ctx: CommandContext, args: readonly Buffer[]): RedisValue => {
    const key = arg(args, 1);
    if (ctx.state.lookup(key, ctx.now_ms) === null) return int(-2);
    const deadline = ctx.state.deadlineOf(key);
    if (deadline === null) return int(-1);
    if (absolute) return int(Math.floor(deadline / unit_ms));
    const left_ms = deadline - ctx.now_ms;
    return int(unit_ms === 1 ? left_ms : Math.floor((left_ms + 500) / 1000));
  };
}

function runPersist(ctx: CommandContext, args: readonly Buffer[]): RedisValue {
  const key = arg(args, 1);
  if (ctx.state.lookup(key, ctx.now_ms) === null || ctx.state.deadlineOf(key) === null)
    return int(0);
  ctx.state.setDeadline(key, null);
  return int(1);
}

// ------------------------------------------------------------------ reads

function runKeys(ctx: CommandContext, args: readonly Buffer[]): RedisValue {
  if (ctx.state.key_count > LIMITS.keys_scan_keys_max) {
    return error(
      `ERR KEYS would scan ${ctx.state.key_count} keys (more than ` +
        `${LIMITS.keys_scan_keys_max}); use SCAN`,
    );
  }
  const pattern = arg(args, 1).toString('latin1');
  const found: RedisValue[] = [];
  for (const key of ctx.state.keys()) {
    if (!globMatch(pattern, key)) continue;
    if (ctx.state.lookup(key, ctx.now_ms) !== null) found.push(bulk(Buffer.from(key, 'latin1')));
  }
  return array(found);
}

function runFlush(ctx: CommandContext, args: readonly Buffer[]): RedisValue {
  if (args.length > 2) return SYNTAX_ERROR;
  if (args.length === 2 && !['ASYNC', 'SYNC'].includes(upper(args[1]))) return SYNTAX_ERROR;
  ctx.state.clear();
  return OK;
}

function runExists(ctx: CommandContext, args: readonly Buffer[]): RedisValue {
  let found = 0;
  for (let i = 1; i < args.length; i++)
    if (ctx.state.lookup(arg(args, i), ctx.now_ms) !== null) found++;
  return int(found);
}

function liveKeyCount(ctx: CommandContext): number {
  // Deleting expired keys is the leader's job; until then they are counted out here.
  let expired = 0;
  for (const [, deadline] of ctx.state.expiringKeys()) if (deadline <= ctx.now_ms) expired++;
  return ctx.state.key_count - expired;
}

type Run = DataCommandSpec['run'];
function spec(
  name: string,
  arity: number,
  kind: 'write' | 'read',
  keys: [number, number, number],
  run: Run,
): DataCommandSpec {
  return { name, arity, kind, keys, run };
}
const ONE_KEY: [number, number, number] = [1, 1, 1];
const ALL_KEYS: [number, number, number] = [1, -1, 1];
const NO_KEYS: [number, number, number] = [0, 0, 0];

const getRun: Run = (ctx, args) => {
  const value = liveValue(ctx, arg(args, 1));
  return value === null ? NULL : bulk(value);
};

export const DATA_COMMANDS: ReadonlyMap<string, DataCommandSpec> = new Map(
  [
    spec('get', 2, 'read', ONE_KEY, getRun),
    spec('set', -3, 'write', ONE_KEY, runSet),
    spec('setnx', 3, 'write', ONE_KEY, (ctx, args) =>
      runSet(ctx, [arg(args, 0), arg(args, 1), arg(args, 2), Buffer.from('NX')]) === OK
        ? int(1)
        : int(0),
    ),
    spec('setex', 4, 'write', ONE_KEY, runSetEx('EX', 'setex')),
    spec('psetex', 4, 'write', ONE_KEY, runSetEx('PX', 'psetex')),
    spec('getset', 3, 'write', ONE_KEY, (ctx, args) =>
      runSet(ctx, [arg(args, 0), arg(args, 1), arg(args, 2), Buffer.from('GET')]),
    ),
    spec('getdel', 2, 'write', ONE_KEY, (ctx, args) => {
      const value = liveValue(ctx, arg(args, 1));
      if (value === null) return NULL;
      ctx.state.remove(arg(args, 1));
      return bulk(value);
    }),
    spec('getex', -2, 'write', ONE_KEY, runGetEx),
    spec('mget', -2, 'read', ALL_KEYS, (ctx, args) =>
      array(args.slice(1).map((key) => getRun(ctx, [arg(args, 0), key]))),
    ),
    spec('mset', -3, 'write', [1, -1, 2], runMset(false)),
    spec('msetnx', -3, 'write', [1, -1, 2], runMset(true)),
    spec('incr', 2, 'write', ONE_KEY, runIncrBy(1n, false)),
    spec('decr', 2, 'write', ONE_KEY, runIncrBy(-1n, false)),
    spec('incrby', 3, 'write', ONE_KEY, runIncrBy(1n, true)),
    spec('decrby', 3, 'write', ONE_KEY, runIncrBy(-1n, true)),
    spec('append', 3, 'write', ONE_KEY, runAppend),
    spec('strlen', 2, 'read', ONE_KEY, (ctx, args) =>
      int(liveValue(ctx, arg(args, 1))?.length ?? 0),
    ),
    spec('exists', -2, 'read', ALL_KEYS, runExists),
    spec('type', 2, 'read', ONE_KEY, (ctx, args) =>
      status(liveValue(ctx, arg(args, 1)) === null ? 'none' : 'string'),
    ),
    spec('del', -2, 'write', ALL_KEYS, runDel),
    spec('unlink', -2, 'write', ALL_KEYS, runDel),
    spec('rename', 3, 'write', [1, 2, 1], runRename(false)),
    spec('renamenx', 3, 'write', [1, 2, 1], runRename(true)),
    spec('keys', 2, 'read', NO_KEYS, runKeys),
    spec('expire', -3, 'write', ONE_KEY, runExpire('EX', 'expire')),
    spec('pexpire', -3, 'write', ONE_KEY, runExpire('PX', 'pexpire')),
    spec('expireat', -3, 'write', ONE_KEY, runExpire('EXAT', 'expireat')),
    spec('pexpireat', -3, 'write', ONE_KEY, runExpire('PXAT', 'pexpireat')),
    spec('ttl', 2, 'read', ONE_KEY, runTtl(1000, false)),
    spec('pttl', 2, 'read', ONE_KEY, runTtl(1, false)),
    spec('expiretime', 2, 'read', ONE_KEY, runTtl(1000, true)),
    spec('pexpiretime', 2, 'read', ONE_KEY, runTtl(1, true)),
    spec('persist', 2, 'write', ONE_KEY, runPersist),
    spec('flushdb', -1, 'write', NO_KEYS, runFlush),
    spec('flushall', -1, 'write', NO_KEYS, runFlush),
    spec('dbsize', 1, 'read', NO_KEYS, (ctx) => int(liveKeyCount(ctx))),
  ].map((entry) => [entry.name, entry]),
);

/** Null when the arity fits, else Redis's error text. */
export function arityError(spec_: { name: string; arity: number }, count: number): string | null {
  const fits = spec_.arity > 0 ? count === spec_.arity : count >= -spec_.arity;
  return fits ? null : `ERR wrong number of arguments for '${spec_.name}' command`;
}

// ------------------------------------------------------------------ apply entry points

/** Opcode 3: one command, re-parsed; anything malformed is an error reply, never data. */
export function applyRedisWrite(state: KvStateMachine, args: readonly Buffer[]): RedisValue {
  return runOne({ state, now_ms: state.clock_ms }, args);
}

function runOne(ctx: CommandContext, args: readonly Buffer[]): RedisValue {
  const name = upper(args[0]).toLowerCase();
  const command = DATA_COMMANDS.get(name);
  if (command === undefined) return error(`ERR unknown command '${name}'`);
  const arity = arityError(command, args.length);
  if (arity !== null) return error(arity);
  return command.run(ctx, args);
}

/** Opcode 4: all queued commands at one time, or none if a watched key changed. */
export function applyTransaction(
  state: KvStateMachine,
  command: Extract<KvCommand, { op: 'transaction' }>,
): RedisValue {
  const ctx = { state, now_ms: state.clock_ms };
  for (const key of command.watched) {
    if (state.changedAfter(key, command.watch_index, ctx.now_ms)) return { t: 'null_array' };
  }
  return array(command.commands.map((args) => runOne(ctx, args)));
}

/** Opcode 5: deletes the listed keys that are expired at `stamp_ms`; replies the count. */
export function applyExpire(
  state: KvStateMachine,
  keys: readonly Buffer[],
  stamp_ms: number,
): RedisValue {
  let removed = 0;
  for (const key of keys) {
    const deadline = state.deadlineOf(key);
    if (deadline !== null && deadline <= stamp_ms && state.remove(key)) removed++;
  }
  return int(removed);
}

/** A read command run against the state at `now_ms` (the leader's time at read). */
export function runRead(ctx: CommandContext, args: readonly Buffer[]): RedisValue {
  return runOne(ctx, args);
}
