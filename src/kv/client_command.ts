/**
 * The client command table: turns a parsed RESP request into what the server
 * should do. Command names are case-insensitive. Error messages follow
 * Redis 7's wording so that existing clients and testers recognise them.
 *
 * | Command                  | Arity   | Result          |
 * |--------------------------|---------|-----------------|
 * | SET key word [word ...]  | >= 3    | write (set)     |
 * | DEL key [key ...]        | >= 2    | write (del)     |
 * | GET key                  | 2       | read            |
 * | PING [message]           | 1..2    | ping            |
 * | INFO [section]           | 1..2    | info            |
 * | COMMAND, COMMAND DOCS .. | any     | command_docs    |
 * | QUIT                     | any     | quit            |
 */
import { assert } from '../util/assert';
import type { KvCommand } from './command_codec';

export type ClientCommand =
  | { kind: 'write'; command: KvCommand }
  | { kind: 'read'; key: Buffer }
  | { kind: 'ping'; message: Buffer | null }
  | { kind: 'info'; section: string | null }
  | { kind: 'command_docs' }
  | { kind: 'quit' }
  | { kind: 'error'; message: string };

/** Redis truncates names and echoed arguments in error messages to this many bytes. */
const ERROR_ECHO_BYTES_MAX = 128;

interface CommandSpec {
  /** Lowercase name, as Redis prints it in arity errors. */
  name: string;
  arity_min: number;
  /** Inclusive; null for no maximum. */
  arity_max: number | null;
  build(args: readonly Buffer[]): ClientCommand;
}

const COMMANDS: ReadonlyMap<string, CommandSpec> = new Map(
  (
    [
      {
        name: 'set',
        arity_min: 3,
        arity_max: null,
        build: (args) => write({ op: 'set', key: at(args, 1), words: args.slice(2) }),
      },
      {
        name: 'del',
        arity_min: 2,
        arity_max: null,
        build: (args) => write({ op: 'del', keys: args.slice(1) }),
      },
      {
        name: 'get',
        arity_min: 2,
        arity_max: 2,
        build: (args) => ({ kind: 'read', key: at(args, 1) }),
      },
      {
        name: 'ping',
        arity_min: 1,
        arity_max: 2,
        build: (args) => ({ kind: 'ping', message: args[1] ?? null }),
      },
      {
        name: 'info',
        arity_min: 1,
        arity_max: 2,
        build: (args) => ({ kind: 'info', section: sectionOf(args[1]) }),
      },
      { name: 'command', arity_min: 1, arity_max: null, build: buildCommandCommand },
      { name: 'quit', arity_min: 1, arity_max: null, build: () => ({ kind: 'quit' }) },
    ] satisfies CommandSpec[]
  ).map((spec) => [spec.name, spec]),
);

const LONGEST_NAME_BYTES = Math.max(...[...COMMANDS.keys()].map((name) => name.length));

export function parseClientCommand(args: readonly Buffer[]): ClientCommand {
  const name = args[0];
  if (name === undefined) return { kind: 'error', message: 'ERR empty command' };
  const spec =
    name.length <= LONGEST_NAME_BYTES
      ? COMMANDS.get(name.toString('latin1').toLowerCase())
      : undefined;
  if (spec === undefined) return { kind: 'error', message: unknownCommandMessage(args) };
  if (args.length < spec.arity_min || (spec.arity_max !== null && args.length > spec.arity_max)) {
    return { kind: 'error', message: `ERR wrong number of arguments for '${spec.name}' command` };
  }
  return spec.build(args);
}

function write(command: KvCommand): ClientCommand {
  return { kind: 'write', command };
}

function at(args: readonly Buffer[], index: number): Buffer {
  const arg = args[index];
  assert(arg !== undefined, `argument ${index} missing after the arity check`);
  return arg;
}

function sectionOf(arg: Buffer | undefined): string | null {
  return arg === undefined ? null : arg.toString('utf8').toLowerCase();
}

/**
 * redis-cli sends `COMMAND DOCS` on connect; we answer it (and bare COMMAND) with an empty array.
 */
function buildCommandCommand(args: readonly Buffer[]): ClientCommand {
  const subcommand = args[1];
  if (subcommand === undefined || subcommand.toString('latin1').toLowerCase() === 'docs')
    return { kind: 'command_docs' };
  const echoed = echo(subcommand, ERROR_ECHO_BYTES_MAX);
  return { kind: 'error', message: `ERR unknown subcommand '${echoed}'. Try COMMAND HELP.` };
}

/**
 * Redis: the name, then each argument quoted and followed by a space, until 128 bytes of arguments
 * are echoed.
 */
function unknownCommandMessage(args: readonly Buffer[]): string {
  const name = args[0];
  let echoed = '';
  let echoed_bytes = 0;
  for (let i = 1; i < args.length && echoed_bytes < ERROR_ECHO_BYTES_MAX; i++) {
    const arg = args[i];
    if (arg === undefined) break;
    const part = `'${echo(arg, ERROR_ECHO_BYTES_MAX - echoed_bytes)}' `;
    echoed += part;
    echoed_bytes += Buffer.byteLength(part, 'utf8');
  }
  return (
    `ERR unknown command '${name === undefined ? '' : echo(name, ERROR_ECHO_BYTES_MAX)}', ` +
    `with args beginning with: ${echoed}`
  );
}

/** At most `bytes_max` bytes of `arg`, with CR/LF blanked so the reply stays one RESP line. */
function echo(arg: Buffer, bytes_max: number): string {
  return arg
    .subarray(0, Math.max(0, bytes_max))
    .toString('utf8')
    .replace(/[\r\n]/g, ' ');
}
