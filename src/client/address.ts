import { InvalidArgumentError } from './errors';

export interface NodeAddress {
  host: string;
  port: number;
}

/** Parses "host:port" or "[v6::addr]:port". */
export function parseNodeAddress(text: string): NodeAddress {
  const match = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text.trim());
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (host === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`bad node address ${JSON.stringify(text)}: expected host:port`);
  }
  return { host, port };
}

/** The canonical "host:port" text used as a node's identity inside the client. */
export function formatNodeAddress(address: NodeAddress): string {
  return address.host.includes(':')
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`;
}
