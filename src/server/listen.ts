import type * as net from 'node:net';

/**
 * Binds `server` to host:port. Rejects with the listen error (EADDRINUSE,
 * EACCES, …) so the node can exit with one clear line; errors after that go
 * to `on_later_error`.
 */
export function listen(
  server: net.Server,
  host: string,
  port: number,
  on_later_error: (error: Error) => void,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onListenError = (error: Error): void => reject(error);
    server.once('error', onListenError);
    server.listen(port, host, () => {
      server.off('error', onListenError);
      server.on('error', on_later_error);
      resolve();
    });
  });
}

/** The port `server` is bound to (useful after listening on port 0), 0 if not bound. */
export function boundPort(server: net.Server): number {
  const address = server.address();
  return address !== null && typeof address === 'object' ? address.port : 0;
}
