import * as net from 'node:net';

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A port nothing listens on right now on 127.0.0.1: the kernel picks it and we release it. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Client ports whose Raft ports (client − 1000) are free too, spaced apart so clusters never
 * collide.
 */
export async function freePortPairs(count: number): Promise<number[]> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 35_000);
    const ports = Array.from({ length: count }, (_, i) => base + i);
    let ok = true;
    for (const port of ports) {
      if (!(await portFree(port)) || !(await portFree(port - 1000))) {
        ok = false;
        break;
      }
    }
    if (ok) return ports;
  }
  throw new Error('no free ports found');
}
