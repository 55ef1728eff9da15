/**
 * `npm run sim -- --seeds N [--nodes 3|5] [--seed S] [--start S0] [--chaos-ms MS] [--profile
 * mixed|crashy|partition] [--membership on|off]` (membership: force the seed's draw)
 * Runs N seeds (or replays one) and ends with exactly one summary line:
 * `sim: <N> seeds, <V> violations (<R> seeds/s)`; exits non-zero if V > 0.
 */
import { runSeed, type SeedOptions } from './seed_run';

function parseArgs(argv: string[]): {
  seeds: number;
  start: number;
  replay: number | null;
  options: SeedOptions;
} {
  let seeds = 100;
  let start = Date.now() % 1_000_000_000; // the only clock read: it picks seeds, which are printed
  let replay: number | null = null;
  const options: SeedOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    const number = (): number => {
      const parsed = Number(value);
      if (value === undefined || !Number.isInteger(parsed))
        throw new Error(`${flag} needs an integer`);
      i++;
      return parsed;
    };
    if (flag === '--seeds') seeds = number();
    else if (flag === '--seed') replay = number();
    else if (flag === '--start') start = number();
    else if (flag === '--nodes') options.nodes = number();
    else if (flag === '--chaos-ms') options.chaos_ms = number();
    else if (flag === '--profile') {
      if (value !== 'mixed' && value !== 'crashy' && value !== 'partition')
        throw new Error('--profile is mixed, crashy or partition');
      options.profile = value;
      i++;
    } else if (flag === '--membership') {
      if (value !== 'on' && value !== 'off') throw new Error('--membership is on or off');
      options.membership = value === 'on';
      i++;
    } else
      throw new Error(
        `unknown flag ${flag}; usage: npm run sim -- --seeds N [--nodes 3|5] [--seed S] ` +
          '[--start S0] [--chaos-ms MS] [--profile mixed|crashy|partition] [--membership on|off]',
      );
  }
  return { seeds, start, replay, options };
}

async function main(): Promise<void> {
  const { seeds, start, replay, options } = parseArgs(process.argv.slice(2));
  const list = replay !== null ? [replay] : Array.from({ length: seeds }, (_, i) => start + i);
  const began = process.hrtime.bigint();
  let violations = 0;
  let done = 0;
  const storage_events = new Map<string, number>();
  let membership_changes = 0;
  for (const seed of list) {
    const result = await runSeed(seed, options);
    done++;
    membership_changes += result.membership_changes;
    for (const [event, count] of result.storage_events)
      storage_events.set(event, (storage_events.get(event) ?? 0) + count);
    if (!result.ok) {
      violations++;
      const nodes =
        (options.nodes !== undefined ? ` --nodes ${options.nodes}` : '') +
        (options.profile !== undefined ? ` --profile ${options.profile}` : '') +
        (options.membership !== undefined
          ? ` --membership ${options.membership ? 'on' : 'off'}`
          : '');
      console.log(
        `seed ${seed}: ${result.violation}\n  replay: npm run sim -- --seed ${seed}${nodes}`,
      );
    } else if (replay !== null) {
      console.log(
        `seed ${seed}: ok (${result.operations} client operations, ` +
          `${result.messages} messages, ${result.virtual_ms} virtual ms)`,
      );
    }
    if (done % 50 === 0 && done < list.length)
      console.log(`... ${done}/${list.length} seeds, ${violations} violations`);
  }
  const seconds = Number(process.hrtime.bigint() - began) / 1e9;
  const events = [...storage_events].map(([event, count]) => `${event} ${count}`).join(', ');
  console.log(`storage events: ${events === '' ? 'none' : events}`);
  console.log(`membership changes committed: ${membership_changes}`);
  console.log(
    `sim: ${list.length} seeds, ${violations} violations ` +
      `(${(list.length / seconds).toFixed(1)} seeds/s)`,
  );
  process.exitCode = violations > 0 ? 1 : 0;
}

main();
