import { assert } from './assert';

/** Exponent cap so that 2 ** failures stays a small finite number. */
const BACKOFF_EXPONENT_MAX = 30;

/**
 * Delay before retry number `failures` (1-based), for peer redials and client retries alike.
 *
 * The ceiling doubles from base_ms with each consecutive failure, up to max_ms. The delay is drawn
 * from the upper half of the ceiling ("equal jitter") but never below base_ms: callers failing
 * together spread out, yet none retries in a tight loop. `random` returns a float in [0, 1); pass a
 * seeded one to replay a run.
 */
export function backoffDelay(
  failures: number,
  base_ms: number,
  max_ms: number,
  random: () => number,
): number {
  assert(Number.isInteger(failures) && failures >= 1, `backoff failures ${failures} must be >= 1`);
  assert(base_ms > 0 && base_ms <= max_ms, `backoff base ${base_ms} ms must be in (0, ${max_ms}]`);
  const exponent = Math.min(failures - 1, BACKOFF_EXPONENT_MAX);
  const ceiling_ms = Math.min(max_ms, base_ms * 2 ** exponent);
  const floor_ms = Math.max(base_ms, ceiling_ms / 2);
  return floor_ms + random() * (ceiling_ms - floor_ms);
}
