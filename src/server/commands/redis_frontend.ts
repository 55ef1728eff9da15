/**
 * The Redis view of the store, and every command beyond the seed's five:
 * connection commands are answered here; data commands become a
 * RedisRequest the node serves like SET/GET (here as leader, by forwarding,
 * or with `-MOVED`); MULTI queues per connection and EXEC commits the queue
 * as one log entry; WATCH reads the applied index linearizably and EXEC's
 * entry carries it, so the check happens at apply time.
 */
import { arityError, DATA_COMMANDS } from '../../kv/redis_commands';
import { encodeRedisValue, error, int, OK, status, type RedisValue } from '../../resp/redis_value';
import { LIMITS } from '../../util/limits';
import type { ClientConnectionInfo, ClientReply } from '../client_listener';
import { keySlot } from './cluster_slot';
import { COMMAND_NAMES, commandCommand } from './command_docs';
import {
  client,
  cluster,
  configCommand,
  hello,
  select,
  time,
  type ConnectionHost,
} from './connection_commands';
import type { RedisRequest } from './request';
import { ScanCursors } from './scan';
import type { Session } from './session';

type ReadRun = Extract<RedisRequest, { kind: 'redis_read' }>['run'];

/** Internal commands, sent by a follower that forwards a WATCH or an EXEC. */
export const APPLIED_COMMAND = 'RAFT.APPLIED';
export const EXEC_COMMAND = 'RAFT.EXEC';

export interface FrontendHost {
  connectionHost(connection: ClientConnectionInfo): ConnectionHost;
  info(section: string | null): string;
  /** Serves a request on the leader, wherever that is; `args` is what a follower forwards. */
  dispatch(
    request: RedisRequest,
    args: Buffer[],
    connection: ClientConnectionInfo,
    session: Session,
  ): Promise<Buffer>;
}

const QUEUED = status('QUEUED');

export class RedisFrontend {
  private readonly scans = new ScanCursors();

  constructor(private readonly host: FrontendHost) {}

  handle(
    args: Buffer[],
    connection: ClientConnectionInfo,
    session: Session,
  ): ClientReply | Promise<ClientReply> {
    const name = (args[0]?.toString('latin1') ?? '').toLowerCase();
    session.last_command = name;
    const reply = (value: RedisValue): ClientReply => ({
      reply: encodeRedisValue(value, session.resp),
    });
    if (
      session.multi !== null &&
      !['exec', 'discard', 'multi', 'watch', 'quit', 'reset'].includes(name)
    )
      return reply(this.queue(args, name, session));
    const data = DATA_COMMANDS.get(name);
    if (data !== undefined) {
      const arity = arityError(data, args.length);
      if (arity !== null) return reply(error(arity));
      return this.served(this.dataRequest(args, data.kind, session), args, connection, session);
    }
    const local = this.connectionCommand(name, args, connection, session);
    if (local !== null) return 'reply' in local ? local : reply(local);
    return this.transactionCommand(name, args, connection, session);
  }

  private served(
    request: RedisRequest,
    args: Buffer[],
    connection: ClientConnectionInfo,
    session: Session,
  ): Promise<ClientReply> {
    return this.host
      .dispatch(request, args, connection, session)
      .then((bytes) => ({ reply: bytes }));
  }

  /** A read of no particular key (slot 0), served through ReadIndex like a data read. */
  private servedRead(
    run: ReadRun,
    args: Buffer[],
    connection: ClientConnectionInfo,
    session: Session,
  ): Promise<ClientReply> {
    return this.served(
      { kind: 'redis_read', run, resp: session.resp, slot: 0 },
      args,
      connection,
      session,
    );
  }

  private dataRequest(args: Buffer[], kind: 'write' | 'read', session: Session): RedisRequest {
    const key = args[1];
    const slot = key === undefined ? 0 : keySlot(key);
    if (kind === 'write') {
      const copy = args.map((a) => Buffer.from(a));
      return {
        kind: 'redis_write',
        make: (stamp_ms) => ({ op: 'redis', stamp_ms, args: copy }),
        resp: session.resp,
        slot,
      };
    }
    const spec = DATA_COMMANDS.get((args[0]?.toString('latin1') ?? '').toLowerCase());
    return {
      kind: 'redis_read',
      run: (state, now_ms) => spec?.run({ state, now_ms }, args) ?? error('ERR unknown command'),
      resp: session.resp,
      slot,
    };
  }

  /** Commands answered without the log; null when `name` is none of them. */
  private connectionCommand(
    name: string,
    args: Buffer[],
    connection: ClientConnectionInfo,
    session: Session,
  ): RedisValue | ClientReply | null {
    const host = (): ConnectionHost => this.host.connectionHost(connection);
    switch (name) {
      case 'hello':
        return hello(args, session, host());
      case 'auth': {
        if (args.length < 2 || args.length > 3)
          return error("ERR wrong number of arguments for 'auth' command");
        const user = args.length === 3 ? (args[1]?.toString('utf8') ?? '') : 'default';
        const refused = host().authenticate(user, args[args.length - 1] ?? Buffer.alloc(0));
        return refused === null ? OK : error(refused);
      }
      case 'client':
        return args.length < 2
          ? error("ERR wrong number of arguments for 'client' command")
          : client(args, session, host());
      case 'select':
        return args.length !== 2
          ? error("ERR wrong number of arguments for 'select' command")
          : select(args);
      case 'echo':
        return args.length !== 2
          ? error("ERR wrong number of arguments for 'echo' command")
          : { t: 'bulk', value: args[1] as Buffer };
      case 'ping':
        if (args.length > 2) return error("ERR wrong number of arguments for 'ping' command");
        return args[1] === undefined ? status('PONG') : { t: 'bulk', value: args[1] };
      case 'quit':
        return { reply: encodeRedisValue(OK, session.resp), close_after: true };
      case 'reset':
        session.multi = null;
        session.multi_refused = false;
        session.watch = null;
        session.name = '';
        session.resp = 2;
        return status('RESET');
      case 'command':
        return commandCommand(args);
      case 'config':
        return args.length < 2
          ? error("ERR wrong number of arguments for 'config' command")
          : configCommand(args, host());
      case 'time':
        return time();
      case 'info': {
        const text = this.host.info(args[1]?.toString('utf8').toLowerCase() ?? null);
        return { t: 'verbatim', text };
      }
      case 'cluster':
        return args.length < 2
          ? error("ERR wrong number of arguments for 'cluster' command")
          : cluster(args, host());
      case 'readonly':
      case 'readwrite':
        return OK;
      default:
        return null;
    }
  }

  private queue(args: Buffer[], name: string, session: Session): RedisValue {
    const queued = session.multi;
    if (queued === null) return error('ERR internal: not in MULTI');
    const data = DATA_COMMANDS.get(name);
    let refusal: string | null = null;
    if (data === undefined) {
      refusal = COMMAND_NAMES.includes(name)
        ? `ERR '${name}' cannot be queued in MULTI here (only data commands can)`
        : unknownCommand(args);
    } else {
      refusal = arityError(data, args.length);
    }
    if (refusal === null && queued.length >= LIMITS.multi_queued_commands_max)
      refusal = `ERR more than ${LIMITS.multi_queued_commands_max} commands in one MULTI`;
    if (refusal !== null) {
      session.multi_refused = true;
      return error(refusal);
    }
    queued.push(args.map((a) => Buffer.from(a)));
    return QUEUED;
  }

  private transactionCommand(
    name: string,
    args: Buffer[],
    connection: ClientConnectionInfo,
    session: Session,
  ): ClientReply | Promise<ClientReply> {
    const reply = (value: RedisValue): ClientReply => ({
      reply: encodeRedisValue(value, session.resp),
    });
    switch (name) {
      case 'multi':
        if (session.multi !== null) return reply(error('ERR MULTI calls can not be nested'));
        session.multi = [];
        session.multi_refused = false;
        return reply(OK);
      case 'discard':
        if (session.multi === null) return reply(error('ERR DISCARD without MULTI'));
        session.multi = null;
        session.watch = null;
        return reply(OK);
      case 'unwatch':
        session.watch = null;
        return reply(OK);
      case 'watch':
        if (session.multi !== null) return reply(error('ERR WATCH inside MULTI is not allowed'));
        if (args.length < 2)
          return reply(error("ERR wrong number of arguments for 'watch' command"));
        return this.watch(args, connection, session);
      case 'exec':
        return this.exec(connection, session);
      case 'scan':
        if (args.length < 2)
          return reply(error("ERR wrong number of arguments for 'scan' command"));
        return this.servedRead(
          (state, now_ms) => this.scans.scan(state, now_ms, args),
          args,
          connection,
          session,
        );
      case APPLIED_COMMAND.toLowerCase():
        return this.servedRead((state) => int(state.last_applied), args, connection, session);
      case EXEC_COMMAND.toLowerCase():
        return this.execForwarded(args, connection, session);
      default:
        return reply(error(unknownCommand(args)));
    }
  }

  private async watch(
    args: Buffer[],
    connection: ClientConnectionInfo,
    session: Session,
  ): Promise<ClientReply> {
    const keys = args.slice(1).map((a) => Buffer.from(a));
    if (session.watch !== null) {
      // The first WATCH's index stays: a change after it to any watched key aborts.
      session.watch.keys.push(...keys);
      return { reply: encodeRedisValue(OK, session.resp) };
    }
    const applied = [Buffer.from(APPLIED_COMMAND)];
    const bytes = await this.host.dispatch(
      { kind: 'redis_read', run: (state) => int(state.last_applied), resp: session.resp, slot: 0 },
      applied,
      connection,
      session,
    );
    const match = /^:(\d+)\r\n$/.exec(bytes.toString('latin1'));
    if (match === null) return { reply: bytes };
    session.watch = { index: Number(match[1]), keys };
    return { reply: encodeRedisValue(OK, session.resp) };
  }

  private exec(
    connection: ClientConnectionInfo,
    session: Session,
  ): ClientReply | Promise<ClientReply> {
    const commands = session.multi;
    const watch = session.watch;
    const refused = session.multi_refused;
    session.multi = null;
    session.multi_refused = false;
    session.watch = null;
    if (commands === null)
      return { reply: encodeRedisValue(error('ERR EXEC without MULTI'), session.resp) };
    if (refused) {
      return {
        reply: encodeRedisValue(
          error('EXECABORT Transaction discarded because of previous errors.'),
          session.resp,
        ),
      };
    }
    return this.runTransaction(commands, watch, connection, session);
  }

  private runTransaction(
    commands: Buffer[][],
    watch: { index: number; keys: Buffer[] } | null,
    connection: ClientConnectionInfo,
    session: Session,
  ): Promise<ClientReply> {
    const watched = watch?.keys ?? [];
    const watch_index = watch?.index ?? 0;
    const forward: Buffer[] = [
      Buffer.from(EXEC_COMMAND),
      Buffer.from(String(watch_index)),
      Buffer.from(String(watched.length)),
      ...watched,
      Buffer.from(String(commands.length)),
    ];
    for (const command of commands) forward.push(Buffer.from(String(command.length)), ...command);
    const first_key = commands[0]?.[1];
    return this.served(
      {
        kind: 'redis_write',
        make: (stamp_ms) => ({ op: 'transaction', stamp_ms, watch_index, watched, commands }),
        resp: session.resp,
        slot: first_key === undefined ? 0 : keySlot(first_key),
      },
      forward,
      connection,
      session,
    );
  }

  /** The leader's side of a forwarded EXEC: `RAFT.EXEC index n keys... m (argc args...)...`. */
  private execForwarded(
    args: Buffer[],
    connection: ClientConnectionInfo,
    session: Session,
  ): ClientReply | Promise<ClientReply> {
    const parsed = parseForwardedExec(args);
    if (parsed === null)
      return { reply: encodeRedisValue(error('ERR malformed RAFT.EXEC'), session.resp) };
    return this.runTransaction(
      parsed.commands,
      { index: parsed.index, keys: parsed.watched },
      connection,
      session,
    );
  }
}

function parseForwardedExec(
  args: Buffer[],
): { index: number; watched: Buffer[]; commands: Buffer[][] } | null {
  let position = 1;
  const number = (): number | null => {
    const text = args[position++]?.toString('latin1') ?? '';
    return /^[0-9]{1,15}$/.test(text) ? Number(text) : null;
  };
  const index = number();
  const watch_count = number();
  if (index === null || watch_count === null || position + watch_count > args.length) return null;
  const watched = args.slice(position, position + watch_count);
  position += watch_count;
  const command_count = number();
  if (command_count === null) return null;
  const commands: Buffer[][] = [];
  for (let i = 0; i < command_count; i++) {
    const argc = number();
    if (argc === null || argc < 1 || position + argc > args.length) return null;
    commands.push(args.slice(position, position + argc));
    position += argc;
  }
  return position === args.length ? { index, watched, commands } : null;
}

function unknownCommand(args: readonly Buffer[]): string {
  const name = (args[0]?.toString('utf8') ?? '').slice(0, 128).replace(/[\r\n]/g, ' ');
  const rest = args
    .slice(1)
    .map(
      (a) =>
        `'${a
          .toString('utf8')
          .slice(0, 128)
          .replace(/[\r\n]/g, ' ')}' `,
    )
    .join('')
    .slice(0, 256);
  return `ERR unknown command '${name}', with args beginning with: ${rest}`;
}
