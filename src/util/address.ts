/**
 * The one "host:port" text format of the tree: node addresses in the configuration file, in MOVED
 * replies and in the client's node list are all read and written here.
 */
export interface HostPort {
  host: string;
  port: number;
}

export type HostPortParse = { ok: true; address: HostPort } | { ok: false; problem: string };

const PORT_MAX = 65535;

/**
 * Parses "host:port" or "[v6::addr]:port" (surrounding white space ignored). The host is not
 * checked beyond being non-empty: callers with stricter rules (the configuration wants IPv4)
 * check it themselves.
 */
export function parseHostPort(text: string): HostPortParse {
  const trimmed = text.trim();
  const bracketed = /^\[([^\]]+)\]:(.*)$/.exec(trimmed);
  const colon = trimmed.lastIndexOf(':');
  const host = bracketed?.[1] ?? trimmed.slice(0, colon);
  const port_text = bracketed?.[2] ?? trimmed.slice(colon + 1);
  if (colon < 0 || host === '' || /\s/.test(host))
    return { ok: false, problem: `'${trimmed}' is not host:port` };
  if (bracketed === null && host.includes(':'))
    return { ok: false, problem: `'${trimmed}': an IPv6 host must be written in brackets` };
  if (!/^[0-9]{1,5}$/.test(port_text))
    return { ok: false, problem: `bad port '${port_text}': expected a decimal number` };
  const port = Number(port_text);
  if (port > PORT_MAX) return { ok: false, problem: `bad port ${port}: more than ${PORT_MAX}` };
  if (port < 1) return { ok: false, problem: `bad port ${port}: less than 1` };
  return { ok: true, address: { host, port } };
}

/** The canonical text of an address, which parseHostPort reads back to the same address. */
export function formatHostPort(address: HostPort): string {
  return address.host.includes(':')
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`;
}
