import type fc from 'fast-check';

/**
 * Parameters for a fast-check property of `num_runs` runs. fast-check prints the seed and path of
 * a failing run; FC_SEED=<seed> [FC_PATH=<path>] replays exactly that run.
 */
export function fcRuns<T>(num_runs: number): fc.Parameters<T> {
  const seed = process.env.FC_SEED;
  const path = process.env.FC_PATH;
  return {
    numRuns: num_runs,
    ...(seed === undefined ? {} : { seed: Number(seed) }),
    ...(path === undefined ? {} : { path }),
  };
}
