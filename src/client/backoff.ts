/**
 * Delay before retry number `failures` (1-based): exponential growth capped
 * at max_ms, with "equal jitter" — half fixed, half random — so that clients
 * failing together spread out yet never retry in a tight loop.
 */
export function backoffDelay(
  failures: number,
  base_ms: number,
  max_ms: number,
  random: () => number,
): number {
  const exponent = Math.min(Math.max(failures - 1, 0), 30);
  const ceiling_ms = Math.min(max_ms, base_ms * 2 ** exponent);
  return ceiling_ms / 2 + random() * (ceiling_ms / 2);
}
