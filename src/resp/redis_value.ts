/**
 * A reply in Redis's data model, encoded as RESP2 or RESP3 once the connection's protocol is
 * known: the state machine and the command modules build these, never bytes.
 */
import { assert } from '../util/assert';

export type RedisValue =
  | { t: 'status'; text: string }
  | { t: 'error'; message: string }
  | { t: 'int'; value: number | bigint }
  | { t: 'bulk'; value: Buffer }
  | { t: 'null' }
  /** RESP2: the null array `*-1` (EXEC aborted by WATCH); RESP3: `_`. */
  | { t: 'null_array' }
  | { t: 'array'; items: RedisValue[] }
  /** RESP3 map; RESP2 flattens it into an array of key, value, key, value. */
  | { t: 'map'; entries: [RedisValue, RedisValue][] }
  /** RESP3 boolean; RESP2 `:1`/`:0`. */
  | { t: 'bool'; value: boolean }
  /** RESP3 verbatim string (`=`); RESP2 a bulk string. */
  | { t: 'verbatim'; text: string };

export type RespVersion = 2 | 3;

export const OK: RedisValue = { t: 'status', text: 'OK' };
export const NULL: RedisValue = { t: 'null' };

export function status(text: string): RedisValue {
  return { t: 'status', text };
}
export function error(message: string): RedisValue {
  return { t: 'error', message };
}
export function int(value: number | bigint): RedisValue {
  return { t: 'int', value };
}
export function bulk(value: Buffer | string): RedisValue {
  return { t: 'bulk', value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value };
}
export function array(items: RedisValue[]): RedisValue {
  return { t: 'array', items };
}
export function bulks(items: readonly (Buffer | string)[]): RedisValue {
  return { t: 'array', items: items.map(bulk) };
}
export function map(entries: [string, RedisValue][]): RedisValue {
  return { t: 'map', entries: entries.map(([key, value]) => [bulk(key), value]) };
}

export function encodeRedisValue(value: RedisValue, resp: RespVersion): Buffer {
  const parts: Buffer[] = [];
  writeValue(value, resp, parts);
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
}

function writeValue(value: RedisValue, resp: RespVersion, out: Buffer[]): void {
  switch (value.t) {
    case 'status':
      assert(!/[\r\n]/.test(value.text), 'a status reply cannot contain CR or LF');
      out.push(Buffer.from(`+${value.text}\r\n`, 'utf8'));
      return;
    case 'error':
      out.push(Buffer.from(`-${value.message.replace(/[\r\n]/g, ' ')}\r\n`, 'utf8'));
      return;
    case 'int':
      assert(
        typeof value.value === 'bigint' || Number.isSafeInteger(value.value),
        `integer reply ${value.value} is not safe`,
      );
      out.push(Buffer.from(`:${value.value}\r\n`, 'latin1'));
      return;
    case 'bulk':
      out.push(Buffer.from(`$${value.value.length}\r\n`, 'latin1'), value.value, CRLF);
      return;
    case 'verbatim': {
      if (resp === 2) {
        writeValue(bulk(value.text), resp, out);
        return;
      }
      const body = Buffer.from(`txt:${value.text}`, 'utf8');
      out.push(Buffer.from(`=${body.length}\r\n`, 'latin1'), body, CRLF);
      return;
    }
    case 'null':
      out.push(resp === 3 ? RESP3_NULL : RESP2_NULL_BULK);
      return;
    case 'null_array':
      out.push(resp === 3 ? RESP3_NULL : RESP2_NULL_ARRAY);
      return;
    case 'bool':
      out.push(
        Buffer.from(resp === 3 ? `#${value.value ? 't' : 'f'}\r\n` : `:${+value.value}\r\n`),
      );
      return;
    case 'array':
      out.push(Buffer.from(`*${value.items.length}\r\n`, 'latin1'));
      for (const item of value.items) writeValue(item, resp, out);
      return;
    case 'map':
      out.push(
        Buffer.from(
          resp === 3 ? `%${value.entries.length}\r\n` : `*${value.entries.length * 2}\r\n`,
          'latin1',
        ),
      );
      for (const [key, item] of value.entries) {
        writeValue(key, resp, out);
        writeValue(item, resp, out);
      }
      return;
  }
}

const CRLF = Buffer.from('\r\n', 'latin1');
const RESP3_NULL = Buffer.from('_\r\n', 'latin1');
const RESP2_NULL_BULK = Buffer.from('$-1\r\n', 'latin1');
const RESP2_NULL_ARRAY = Buffer.from('*-1\r\n', 'latin1');
