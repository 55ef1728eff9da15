/**
 * Polls `condition` every 5 ms until it holds; fails naming `what` after `timeout_ms`. No sleeps as
 * synchronisation.
 */
export async function waitFor(
  what: string,
  condition: () => boolean,
  timeout_ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  while (!condition()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeout_ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Sockets, servers and timers still open: a test that closed everything leaves none. */
export function leakedHandles(): string[] {
  return process
    .getActiveResourcesInfo()
    .filter((kind) => kind === 'TCPSocketWrap' || kind === 'TCPServerWrap' || kind === 'Timeout');
}
