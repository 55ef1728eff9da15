/**
 * A scriptable RESP server on port 0 for the client tests. Each request
 * (an array of bulk strings) goes to a handler that returns the raw reply
 * bytes, or undefined to stay silent (it may also destroy the socket).
 */
import net from 'node:net';
import { ReplyParser } from '../../src/resp/client_codec';

export interface FakeConnection {
  readonly socket: net.Socket;
  /** Every chunk received, as 'data' events delivered it. */
  readonly chunks: Buffer[];
}

export type FakeHandler = (
  args: string[],
  connection: FakeConnection,
  server: FakeServer,
) => string | Buffer | undefined;

export class FakeServer {
  readonly connections: FakeConnection[] = [];
  /** Every request received, decoded as UTF-8 words, in arrival order. */
  readonly requests: string[][] = [];
  /** Raw bytes received over all connections. */
  readonly received: Buffer[] = [];
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  private constructor(handler: FakeHandler) {
    this.server = net.createServer((socket) => {
      const connection: FakeConnection = { socket, chunks: [] };
      this.connections.push(connection);
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined);
      const parser = new ReplyParser();
      socket.on('data', (chunk: Buffer) => {
        connection.chunks.push(chunk);
        this.received.push(chunk);
        for (const request of parser.push(chunk)) {
          if (request.type !== 'array' || request.items === null)
            throw new Error('fake server: request is not an array');
          const args = request.items.map((item) =>
            item.type === 'bulk' && item.value !== null ? item.value.toString('utf8') : '?',
          );
          this.requests.push(args);
          const reply = handler(args, connection, this);
          if (reply !== undefined && !socket.destroyed) socket.write(reply);
        }
      });
    });
  }

  static async start(handler: FakeHandler): Promise<FakeServer> {
    const fake = new FakeServer(handler);
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get port(): number {
    const address = this.server.address();
    if (address === null || typeof address === 'string')
      throw new Error('fake server not listening');
    return address.port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Requests whose first word is `name` (case-insensitive). */
  count(name: string): number {
    return this.requests.filter((args) => args[0]?.toUpperCase() === name.toUpperCase()).length;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The seed's simplified KV semantics, for handlers that should behave like a real leader. */
export class FakeStore {
  private readonly values = new Map<string, string[]>();

  handle(args: string[]): string {
    const [name, ...rest] = args;
    switch (name?.toUpperCase()) {
      case 'SET': {
        const [key, ...words] = rest;
        if (key === undefined || words.length === 0)
          return '-ERR wrong number of arguments for SET\r\n';
        this.values.set(key, words);
        return '+OK\r\n';
      }
      case 'GET': {
        const words = this.values.get(rest[0] ?? '') ?? ['nil'];
        const bulks = words.map((word) => `$${Buffer.byteLength(word)}\r\n${word}\r\n`);
        return `*${words.length}\r\n${bulks.join('')}`;
      }
      case 'DEL':
        return `:${rest.filter((key) => this.values.delete(key)).length}\r\n`;
      case 'PING':
        return '+PONG\r\n';
      case 'INFO': {
        const keyspace = `# Keyspace\r\nkeys:${this.values.size}\r\n`;
        const body = `# Raft\r\nrole:leader\r\nterm:3\r\n\r\n${keyspace}`;
        return `$${Buffer.byteLength(body)}\r\n${body}\r\n`;
      }
      default:
        return `-ERR unknown command '${name ?? ''}'\r\n`;
    }
  }
}

/** A port on 127.0.0.1 that refuses connections (it was free a moment ago). */
export async function refusedAddress(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return `127.0.0.1:${address.port}`;
}
