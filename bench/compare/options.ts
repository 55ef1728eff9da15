/** Command-line options of `npm run bench`. */
export interface BenchOptions {
  /** Requests per row at 50 connections without pipelining (redis-benchmark -n). */
  requests: number;
  requests_pipelined: number;
  requests_single: number;
  key_space: number;
  value_bytes: number;
  json: boolean;
  /** Use the built-in load generator even when redis-benchmark is installed. */
  node_load: boolean;
  /** Skip Redis even when installed. */
  no_redis: boolean;
  /** Profile the nodes with --cpu-prof into this directory, running only the 50-connection SETs. */
  profile_dir: string | null;
}

export const USAGE = [
  'usage: npm run bench -- [--json] [--requests N] [--requests-pipelined N]',
  '  [--requests-single N] [--key-space N] [--value-bytes N] [--node-load] [--no-redis]',
  '  [--profile DIR]',
].join('\n');

type CountSetter = (options: BenchOptions, value: number) => void;

const COUNT_FLAGS: Record<string, CountSetter> = {
  '--requests': (o, v) => {
    o.requests = v;
  },
  '--requests-pipelined': (o, v) => {
    o.requests_pipelined = v;
  },
  '--requests-single': (o, v) => {
    o.requests_single = v;
  },
  '--key-space': (o, v) => {
    o.key_space = v;
  },
  '--value-bytes': (o, v) => {
    o.value_bytes = v;
  },
};

export function parseOptions(argv: readonly string[]): BenchOptions {
  const options: BenchOptions = {
    requests: 200_000,
    requests_pipelined: 400_000,
    requests_single: 10_000,
    key_space: 100_000,
    value_bytes: 16,
    json: false,
    node_load: false,
    no_redis: false,
    profile_dir: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] ?? '';
    const setCount = COUNT_FLAGS[flag];
    if (flag === '--json') options.json = true;
    else if (flag === '--node-load') options.node_load = true;
    else if (flag === '--no-redis') options.no_redis = true;
    else if (flag === '--profile' && (argv[i + 1] ?? '') !== '') options.profile_dir = argv[++i]!;
    else if (setCount !== undefined) {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value <= 0)
        throw new Error(`${flag} needs a count\n${USAGE}`);
      setCount(options, value);
    } else throw new Error(`unknown argument '${flag}'\n${USAGE}`);
  }
  return options;
}
