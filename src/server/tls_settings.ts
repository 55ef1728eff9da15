import * as fs from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { ConfigError } from '../util/errors';
import { LIMITS } from '../util/limits';

/**
 * `tls_cert_file`, `tls_key_file`, `tls_ca_file`: this node's certificate and key, and the CA
 * that signs every node's certificate. With them both ports speak TLS; the Raft port is mutual
 * (each side presents its certificate and checks the other's against the CA), and a follower's
 * forwarding links check the leader's.
 */
export interface TlsSettings {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

export interface TlsFiles {
  tls_cert_file: string | null;
  tls_key_file: string | null;
  tls_ca_file: string | null;
}

export function loadTlsSettings(files: TlsFiles): TlsSettings | null {
  const { tls_cert_file, tls_key_file, tls_ca_file } = files;
  if (tls_cert_file === null && tls_key_file === null && tls_ca_file === null) return null;
  if (tls_cert_file === null || tls_key_file === null || tls_ca_file === null) {
    throw new ConfigError(
      tls_cert_file ?? tls_key_file ?? tls_ca_file ?? 'config',
      null,
      'tls_cert_file, tls_key_file and tls_ca_file must be given together',
    );
  }
  return { cert: readPem(tls_cert_file), key: readPem(tls_key_file), ca: readPem(tls_ca_file) };
}

function readPem(file_path: string): Buffer {
  try {
    if (fs.statSync(file_path).size > LIMITS.config_file_bytes_max)
      throw new ConfigError(file_path, null, 'TLS file is too large');
    return fs.readFileSync(file_path);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(file_path, null, `cannot read TLS file: ${reason}`);
  }
}

/** A listening server: plain TCP, or TLS (mutual when `mutual`). */
export function createServer(
  settings: TlsSettings | null,
  options: { allowHalfOpen?: boolean; mutual: boolean },
  on_socket: (socket: net.Socket) => void,
): net.Server {
  if (settings === null)
    return net.createServer({ allowHalfOpen: options.allowHalfOpen }, on_socket);
  return tls.createServer(
    {
      ...settings,
      allowHalfOpen: options.allowHalfOpen,
      requestCert: options.mutual,
      rejectUnauthorized: options.mutual,
      minVersion: 'TLSv1.2',
    },
    on_socket,
  );
}

/** Dials a node: plain TCP, or TLS presenting our certificate and checking the peer's. */
/**
 * `local_address`: dial plain TCP from this address (the node's own, so partitions by address cut
 * it); TLS connections let the OS choose.
 */
export function dial(
  settings: TlsSettings | null,
  host: string,
  port: number,
  local_address?: string,
): net.Socket {
  if (settings === null) return net.connect({ host, port, localAddress: local_address });
  return tls.connect({ host, port, ...settings, rejectUnauthorized: true, minVersion: 'TLSv1.2' });
}

/** The event after which bytes written reach the peer: 'secureConnect' for TLS. */
export function connectedEvent(settings: TlsSettings | null): 'connect' | 'secureConnect' {
  return settings === null ? 'connect' : 'secureConnect';
}
