import { globMatch } from '../../kv/glob';
import { NOT_INTEGER, SYNTAX_ERROR } from '../../kv/redis_commands';
import type { KvStateMachine } from '../../kv/state_machine';
import { array, bulk, error, type RedisValue } from '../../resp/redis_value';
import { LIMITS } from '../../util/limits';

/** Cursor = list id * 2^32 + position, so it stays an exact integer for clients. */
const POSITION_SPAN = 2 ** 32;
const LIST_IDS = 2 ** 20;

/**
 * SCAN on the leader: `SCAN 0` takes the list of keys once (one pass over the map), later calls
 * walk it COUNT keys at a time and skip keys deleted meanwhile. So every key present for the
 * whole scan is returned exactly once, each call does bounded work, and the lists are bounded
 * in number (the oldest is dropped: its cursor then gets an error). The lists are not
 * replicated: a scan that outlives its leader must restart.
 */
export class ScanCursors {
  private readonly lists = new Map<number, string[]>();
  private next_id = 1;

  scan(state: KvStateMachine, now_ms: number, args: readonly Buffer[]): RedisValue {
    const options = parseScan(args);
    if ('t' in options) return options;
    let list_id = Math.floor(options.cursor / POSITION_SPAN);
    let position = options.cursor % POSITION_SPAN;
    let keys: string[] | undefined;
    if (options.cursor === 0) {
      list_id = this.next_id;
      this.next_id = (this.next_id % (LIST_IDS - 1)) + 1;
      keys = [...state.keys()];
      this.lists.set(list_id, keys);
      if (this.lists.size > LIMITS.scan_cursors_max) {
        const oldest = this.lists.keys().next().value as number;
        this.lists.delete(oldest);
      }
    } else {
      keys = this.lists.get(list_id);
      if (keys === undefined) return error('ERR invalid cursor');
    }
    const found: RedisValue[] = [];
    const end = Math.min(keys.length, position + options.count);
    for (; position < end; position++) {
      const key = keys[position] as string;
      if (options.pattern !== null && !globMatch(options.pattern, key)) continue;
      if (options.type_ok && state.lookup(key, now_ms) !== null)
        found.push(bulk(Buffer.from(key, 'latin1')));
    }
    let next = 0;
    if (position < keys.length) next = list_id * POSITION_SPAN + position;
    else this.lists.delete(list_id);
    return array([bulk(String(next)), array(found)]);
  }
}

interface ScanOptions {
  cursor: number;
  count: number;
  pattern: string | null;
  /** False for TYPE other than string: nothing matches. */
  type_ok: boolean;
}

function parseScan(args: readonly Buffer[]): ScanOptions | RedisValue {
  const cursor_text = args[1]?.toString('latin1') ?? '';
  if (!/^[0-9]{1,16}$/.test(cursor_text)) return error('ERR invalid cursor');
  const options: ScanOptions = {
    cursor: Number(cursor_text),
    count: 10,
    pattern: null,
    type_ok: true,
  };
  for (let i = 2; i < args.length; i += 2) {
    const option = args[i]?.toString('latin1').toUpperCase();
    const value = args[i + 1];
    if (value === undefined) return SYNTAX_ERROR;
    if (option === 'COUNT') {
      const count = Number(value.toString('latin1'));
      if (!Number.isSafeInteger(count)) return NOT_INTEGER;
      if (count < 1) return SYNTAX_ERROR;
      options.count = Math.min(count, LIMITS.scan_count_max);
    } else if (option === 'MATCH') {
      options.pattern = value.toString('latin1');
    } else if (option === 'TYPE') {
      options.type_ok = value.toString('latin1').toLowerCase() === 'string';
    } else {
      return SYNTAX_ERROR;
    }
  }
  return options;
}
