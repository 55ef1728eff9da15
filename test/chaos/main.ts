/**
 * `npm run chaos -- --time SECONDS [--seed S] [--nodes 5|3] [--mode forward|moved]
 *  [--faults kind,kind] [--test-faults fault,fault] [--clients N] [--readers N] [--fuzz 1|0]
 *  [--keep 1]`
 *
 * With --test-faults and no --faults the nemesis uses the faults that expose those breakers
 * (EXPOSING_KINDS).
 *
 * Runs real nodes under real partitions and process faults (see run_chaos.ts), prints a summary
 * and, last, exactly one line `chaos: <ops> ops (...), <faults> faults, <V> violations`. Exits 1
 * on a violation or a failed check. Root is needed for iptables. Ctrl-C or SIGTERM removes every
 * rule and process before exiting.
 */
import { TEST_FAULTS, type TestFault } from '../../src/config/config';
import { CHAOS_DEFAULTS, type ChaosOptions, type ChaosResources, runChaos } from './run_chaos';
import { EXPOSING_KINDS, FAULT_KINDS, type FaultKind } from './nemesis';
import { formatSummary } from './summary';

function parseList<T extends string>(text: string, allowed: readonly T[], what: string): T[] {
  return text.split(',').map((item) => {
    const found = allowed.find((candidate) => candidate === item);
    if (found === undefined) throw new Error(`unknown ${what} '${item}' (${allowed.join('|')})`);
    return found;
  });
}

export function parseChaosArgs(argv: readonly string[]): ChaosOptions {
  const options: ChaosOptions = {
    time_s: 60,
    seed: Date.now() % 1_000_000,
    nodes: CHAOS_DEFAULTS.nodes,
    mode: CHAOS_DEFAULTS.mode,
    test_faults: [],
    kinds: CHAOS_DEFAULTS.kinds,
    clients: CHAOS_DEFAULTS.clients,
    readers_per_node: CHAOS_DEFAULTS.readers_per_node,
    keys: CHAOS_DEFAULTS.keys,
    fuzz: CHAOS_DEFAULTS.fuzz,
    log: (line) => process.stdout.write(`${line}\n`),
  };
  let kinds_given = false;
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    const number = Number(value);
    switch (flag) {
      case '--time':
        options.time_s = number;
        break;
      case '--seed':
        options.seed = number;
        break;
      case '--nodes':
        options.nodes = number;
        break;
      case '--fuzz':
        options.fuzz = value !== '0';
        break;
      case '--clients':
        options.clients = number;
        break;
      case '--keep':
        options.keep_dir = value !== '0';
        break;
      case '--readers':
        options.readers_per_node = number;
        break;
      case '--mode':
        options.mode = parseList(value, ['forward', 'moved'] as const, 'mode')[0]!;
        break;
      case '--faults':
        options.kinds = parseList<FaultKind>(value, FAULT_KINDS, 'fault kind');
        kinds_given = true;
        break;
      case '--test-faults':
        options.test_faults = parseList<TestFault>(value, TEST_FAULTS, 'test fault');
        break;
      default:
        throw new Error(`unknown option ${flag}`);
    }
  }
  for (const [name, value] of Object.entries({
    time: options.time_s,
    seed: options.seed,
    clients: options.clients,
    readers: options.readers_per_node,
  })) {
    if (!Number.isInteger(value) || value < 0) throw new Error(`--${name} must be an integer`);
  }
  if (!kinds_given && options.test_faults.length > 0)
    options.kinds = [...new Set(options.test_faults.flatMap((fault) => EXPOSING_KINDS[fault]))];
  if (options.nodes !== 3 && options.nodes !== 5) throw new Error('--nodes must be 3 or 5');
  return options;
}

async function main(): Promise<void> {
  let options: ChaosOptions;
  try {
    options = parseChaosArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`chaos: ${(error as Error).message}\n`);
    process.exit(2);
  }
  const resources: ChaosResources = { cluster: null, net: null };
  const cleanUp = (): void => {
    resources.cluster?.killAllSync();
    resources.net?.close();
  };
  process.on('exit', cleanUp);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      process.stderr.write(`chaos: ${signal}, removing every rule and process\n`);
      cleanUp();
      process.exit(130);
    });
  }
  const result = await runChaos(options, resources);
  const { text, passed } = formatSummary(result);
  process.stdout.write(text);
  process.exitCode = passed ? 0 : 1;
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(
      `chaos: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`,
    );
    process.exit(1);
  });
}
