/**
 * How kvcli shows replies: like redis-cli in a terminal, or as one JSON
 * document per reply for scripts.
 */
import type { Reply } from '../resp/client_codec';
import { parseInfo } from './kv_client';

/** How the command shapes the reply's meaning. */
export interface ReplyContext {
  /** Upper-cased command name. */
  command: string;
}

/** The server's answer to GET for a missing key: the one-word array ["nil"]. */
export function isNilGetReply(reply: Reply): boolean {
  if (reply.type !== 'array' || reply.items === null || reply.items.length !== 1) return false;
  const only = reply.items[0];
  return only?.type === 'bulk' && only.value !== null && only.value.toString('latin1') === 'nil';
}

/** redis-cli's terminal format, without a trailing newline. */
export function formatReplyText(reply: Reply, context: ReplyContext): string {
  if (context.command === 'GET' && isNilGetReply(reply)) return '(nil)';
  // Like redis-cli, INFO is printed raw so that its lines read naturally.
  if (context.command === 'INFO' && reply.type === 'bulk' && reply.value !== null) {
    return reply.value.toString('utf8').replace(/\r\n/g, '\n').replace(/\n$/, '');
  }
  return formatNested(reply, '');
}

function formatNested(reply: Reply, indent: string): string {
  switch (reply.type) {
    case 'simple':
      return reply.value;
    case 'error':
      return `(error) ${reply.message}`;
    case 'integer':
      return `(integer) ${reply.value}`;
    case 'bulk':
      return reply.value === null ? '(nil)' : quoteBytes(reply.value);
    case 'array': {
      if (reply.items === null) return '(nil)';
      if (reply.items.length === 0) return '(empty array)';
      const width = String(reply.items.length).length;
      // Continuation lines of an element line up under its first line.
      const child_indent = indent + ' '.repeat(width + 2);
      return reply.items
        .map(
          (item, index) =>
            `${index === 0 ? '' : indent}${String(index + 1).padStart(width)}) ` +
            `${formatNested(item, child_indent)}`,
        )
        .join('\n');
    }
  }
}

/**
 * redis-cli's quoting: printable ASCII as is, \\ \" \n \r \t \a \b escaped, every other byte \xHH.
 */
export function quoteBytes(bytes: Buffer): string {
  let out = '"';
  for (const byte of bytes) {
    const escaped = BYTE_ESCAPES.get(byte);
    if (escaped !== undefined) out += escaped;
    else if (byte >= 0x20 && byte <= 0x7e) out += String.fromCharCode(byte);
    else out += `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return `${out}"`;
}

const BYTE_ESCAPES: ReadonlyMap<number, string> = new Map([
  [0x5c, '\\\\'],
  [0x22, '\\"'],
  [0x0a, '\\n'],
  [0x0d, '\\r'],
  [0x09, '\\t'],
  [0x07, '\\a'],
  [0x08, '\\b'],
]);

export type JsonValue =
  | string
  | number
  | boolean
  | null
  | JsonValue[]
  | { [key: string]: JsonValue };

/**
 * The JSON form: "OK", 1, ["Cloud","Computing"], null (nil), {"error": "..."};
 * INFO becomes an object of its fields. Bulk strings that are not valid UTF-8
 * become {"base64": "..."} so that no byte is lost.
 */
export function replyToJson(reply: Reply, context: ReplyContext): JsonValue {
  if (context.command === 'GET' && isNilGetReply(reply)) return null;
  if (context.command === 'INFO' && reply.type === 'bulk' && reply.value !== null)
    return parseInfo(reply.value.toString('utf8'));
  return nestedToJson(reply);
}

function nestedToJson(reply: Reply): JsonValue {
  switch (reply.type) {
    case 'simple':
      return reply.value;
    case 'error':
      return { error: reply.message };
    case 'integer':
      return reply.value;
    case 'bulk':
      return reply.value === null ? null : bytesToJson(reply.value);
    case 'array':
      return reply.items === null ? null : reply.items.map(nestedToJson);
  }
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function bytesToJson(bytes: Buffer): JsonValue {
  try {
    return STRICT_UTF8.decode(bytes);
  } catch {
    return { base64: bytes.toString('base64') };
  }
}
