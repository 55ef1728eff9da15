/**
 * `./kvstoreraftsystem --config_path FILE`: one node of the cluster.
 * `--version` prints the version; `--check-config FILE` validates a config
 * file, prints it with every default resolved and exits 0 (or 1 with the error).
 * Startup failures print one line and exit non-zero; SIGTERM/SIGINT stop
 * taking clients, hand leadership over, finish the disk and exit 0.
 */
import * as v8 from 'node:v8';
import { loadConfig, type NodeConfig } from './config/config';
import { configSummary, packageVersion, resolvedConfigText } from './ops/config_report';
import { KvNode } from './server/kv_node';
import { formatHostPort, parseHostPort } from './util/address';
import { LIMITS } from './util/limits';
import { createLogger } from './util/log';

const USAGE =
  'usage: kvstoreraftsystem --config_path FILE [--join host:port] | --check-config FILE | ' +
  '--version | --help';

function configPathFrom(argv: string[]): string {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--config_path' || arg === '--config-path') {
      const value = argv[i + 1];
      if (value === undefined || value === '')
        throw new Error(`--config_path needs a file; ${USAGE}`);
      return value;
    }
    if (arg.startsWith('--config_path=')) return arg.slice('--config_path='.length);
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    if (arg === '--version' || arg === '-v') {
      process.stdout.write(`kvstoreraftsystem ${packageVersion()}\n`);
      process.exit(0);
    }
    if (arg === '--check-config' || arg === '--check_config') checkConfig(argv[i + 1]);
  }
  throw new Error(`missing --config_path; ${USAGE}`);
}

/** Exits 0 after printing the resolved configuration, 1 with the reason it is invalid. */
function checkConfig(file: string | undefined): never {
  if (file === undefined || file === '') die(`--check-config needs a file; ${USAGE}`);
  try {
    process.stdout.write(resolvedConfigText(loadConfig(file)));
  } catch (error) {
    die((error as Error).message);
  }
  process.exit(0);
}

function die(message: string): never {
  process.stderr.write(`kvstoreraftsystem: ${message}\n`);
  process.exit(1);
}

/**
 * Bounds V8's heap headroom (LIMITS.heap_growing_percent) unless the operator chose a growing
 * factor on the node command line. Read by V8 at every full collection, so setting it now works.
 */
function boundHeapGrowth(): void {
  if (process.execArgv.some((arg) => /^--heap[-_]growing[-_]percent/.test(arg))) return;
  v8.setFlagsFromString(`--heap-growing-percent=${LIMITS.heap_growing_percent}`);
}

/** `--join host:port` overrides the config file's `join` (README: Membership). */
function withJoinFlag(config: NodeConfig, argv: string[]): NodeConfig {
  const at = argv.indexOf('--join');
  if (at === -1) return config;
  const parsed = parseHostPort(argv[at + 1] ?? '');
  if (!parsed.ok || parsed.address.port <= 1000)
    throw new Error(`--join needs a member's client address host:port; ${USAGE}`);
  return { ...config, join: formatHostPort(parsed.address) };
}

async function main(): Promise<void> {
  let config: NodeConfig;
  try {
    const argv = process.argv.slice(2);
    config = withJoinFlag(loadConfig(configPathFrom(argv)), argv);
  } catch (error) {
    die((error as Error).message);
  }
  // Lines logged while starting are held back: a start that fails prints one line (its error).
  // Not while joining a cluster, which may take long: the operator sees each attempt.
  let held: string[] | null = config.join === null ? [] : null;
  const write = (line: string): void => {
    if (held === null) process.stderr.write(line);
    else held.push(line);
  };
  // A joining node's id is the cluster's to give (it logs it once joined); its port names it.
  const name = config.join === null ? `node${config.self.id}` : `node:${config.self.client_port}`;
  const logger = createLogger(name, config.log_level, write, {
    format: config.log_format,
  });
  logger.info(configSummary(config));
  const node = new KvNode(config, logger);
  node.on_fatal = (error) => die(error.message);
  process.on('uncaughtException', (error) =>
    die(`internal error: ${error.stack ?? error.message}`),
  );
  process.on('unhandledRejection', (error) =>
    die(
      `internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    ),
  );
  try {
    await node.start();
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (e.syscall === 'listen') {
      const reason =
        e.code === 'EADDRINUSE'
          ? 'address already in use'
          : e.code === 'EACCES'
            ? 'permission denied'
            : (e.code ?? 'failed');
      const where = e as { address?: string; port?: number };
      die(`cannot listen on ${where.address ?? ''}:${where.port ?? ''}: ${reason}`);
    }
    die(e.message);
  }
  if (held !== null) process.stderr.write(held.join(''));
  held = null;
  // After loading the snapshot and the log: that builds the whole state at once, and a bounded
  // factor made it run many more full collections (restart CPU 2.3 s -> 3.6 s at 20 %).
  boundHeapGrowth();
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal}: shutting down`);
    node.stop().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (error: Error) => die(`shutdown failed: ${error.message}`),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

void main();
