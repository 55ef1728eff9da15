/**
 * `./kvstoreraftsystem --config_path FILE`: one node of the cluster.
 * Startup failures print one line and exit non-zero; SIGTERM/SIGINT stop
 * taking clients, hand leadership over, finish the disk and exit 0.
 */
import { loadConfig, type NodeConfig } from './config/config';
import { KvNode } from './server/kv_node';
import { createLogger } from './util/log';

const USAGE = 'usage: kvstoreraftsystem --config_path FILE';

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
  }
  throw new Error(`missing --config_path; ${USAGE}`);
}

function die(message: string): never {
  process.stderr.write(`kvstoreraftsystem: ${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let config: NodeConfig;
  try {
    config = loadConfig(configPathFrom(process.argv.slice(2)));
  } catch (error) {
    die((error as Error).message);
  }
  const logger = createLogger(`node${config.self.id}`, config.log_level);
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
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal}: shutting down`);
    node.stop().then(
      () => process.exit(0),
      (error: Error) => die(`shutdown failed: ${error.message}`),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

void main();
