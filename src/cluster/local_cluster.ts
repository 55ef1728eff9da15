/**
 * `npm start`: a local cluster in one command. Writes one config file per
 * node under <data>/local-cluster/, starts each node as its own process
 * (exactly as `./kvstoreraftsystem --config_path FILE` would). A node that
 * dies does not stop the others.
 *
 * On a terminal it shows the live cluster view (see src/ops/live_view.ts);
 * keys: 1-9 kill node N (SIGKILL) or restart it if it is down, k kills the
 * leader, r restarts every dead node, q or Ctrl-C stops every node and
 * exits. Node logs go to <data>/local-cluster/node<port>.log. Without a
 * terminal (or with --no-view) it prints the leader and how to connect, and
 * node logs go to stderr.
 *
 *   npm start [-- --nodes 3] [--port 8001] [--data ./data] [--log-level info] [--no-view]
 */
import { resolve } from 'node:path';
import { KvClient } from '../client';
import type { NodeView } from '../ops/cluster_view';
import { runLiveView } from '../ops/live_view';
import { LocalSupervisor } from '../ops/local_supervisor';

interface Options {
  nodes: number;
  port: number;
  data: string;
  log_level: string;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { nodes: 3, port: 8001, data: './data', log_level: 'info' };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--nodes') options.nodes = Number(value);
    else if (flag === '--port') options.port = Number(value);
    else if (flag === '--data') options.data = value;
    else if (flag === '--log-level') options.log_level = value;
    else
      throw new Error(
        `unknown option ${flag}; usage: npm start -- [--nodes N] [--port P] [--data DIR] ` +
          '[--log-level L] [--no-view]',
      );
  }
  if (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > 9)
    throw new Error('--nodes must be 1..9');
  if (
    !Number.isInteger(options.port) ||
    options.port <= 1000 ||
    options.port + options.nodes > 65536
  )
    throw new Error('--port must be 1001..65535');
  return options;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const no_view = argv.includes('--no-view');
  let options: Options;
  try {
    options = parseOptions(argv.filter((arg) => arg !== '--no-view'));
  } catch (error) {
    process.stderr.write(`local cluster: ${(error as Error).message}\n`);
    process.exit(2);
  }
  const data = resolve(options.data);
  const ports = Array.from({ length: options.nodes }, (_, i) => options.port + i);
  const view = !no_view && process.stdout.isTTY === true && process.stdin.isTTY === true;
  const supervisor = new LocalSupervisor({
    ports,
    data,
    log_level: options.log_level,
    on_log_line: view ? undefined : (line) => process.stderr.write(`${line}\n`),
  });
  supervisor.startAll();
  if (view) {
    await liveView(supervisor, ports);
    process.stdout.write('stopping the cluster...\n');
    await supervisor.stopAll();
    process.stdout.write('all nodes stopped\n');
    process.exit(0);
  }
  await textMode(supervisor, ports, data);
}

const KEY_HELP =
  'keys: 1-9 kill node N (SIGKILL) / restart it if down   k kill the leader   ' +
  'r restart dead nodes   q quit (stops every node)';

function liveView(supervisor: LocalSupervisor, ports: number[]): Promise<void> {
  let views: NodeView[] = [];
  const onKey = (key: string): void => {
    const node_number = Number(key);
    const by_number = supervisor.nodes.find((node) => node.number === node_number);
    if (by_number !== undefined) supervisor.toggle(by_number);
    if (key === 'r') for (const node of supervisor.nodes) supervisor.start(node);
    if (key === 'k') {
      const leader = views.find((v) => v.reachable && v.role === 'leader');
      const node = supervisor.nodes.find((n) => `127.0.0.1:${n.port}` === leader?.address);
      if (node !== undefined) supervisor.kill(node);
    }
  };
  return runLiveView({
    seeds: ports.map((port) => `127.0.0.1:${port}`),
    stdin: process.stdin,
    stdout: process.stdout,
    title: `local cluster: ${ports.length} nodes; connect with ./kvcli -p ${ports[0]}`,
    on_frame: (latest) => {
      views = latest;
    },
    on_key: onKey,
    footer: () => [
      '',
      KEY_HELP,
      `node logs: ${supervisor.config_dir}/node<port>.log; newest lines:`,
      ...supervisor.recentLines().map((line) => `  ${line.slice(0, 160)}`),
    ],
  });
}

/** No terminal: report the leader and how to connect, run until a signal. */
async function textMode(supervisor: LocalSupervisor, ports: number[], data: string): Promise<void> {
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping the cluster...\n');
    await supervisor.stopAll();
    process.stdout.write('all nodes stopped\n');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  const leader = await findLeader(ports, () => stopping);
  if (stopping) return;
  process.stdout.write(
    [
      `${ports.length}-node cluster running; data under ${data}`,
      `  nodes:  ${ports.map((p) => `127.0.0.1:${p}`).join('  ')}`,
      `  (Raft ports ${ports.map((p) => p - 1000).join(', ')})`,
      leader === null ? '  leader: not elected yet (check the logs above)' : `  leader: ${leader}`,
      '',
      'connect to any node (followers forward to the leader):',
      `  redis-cli -p ${ports[0]}`,
      `  ./kvcli -p ${ports[0]}        ./kvcli -p ${ports[0]} cluster   (live view)`,
      '',
      'Ctrl-C stops every node.',
      '',
    ].join('\n'),
  );
}

async function findLeader(ports: number[], stopping: () => boolean): Promise<string | null> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && !stopping()) {
    await new Promise((r) => setTimeout(r, 200));
    for (const port of ports) {
      const client = new KvClient({ nodes: [`127.0.0.1:${port}`], call_timeout_ms: 500 });
      try {
        const info = await client.info();
        if (info.role === 'leader')
          return `127.0.0.1:${port} (node ${info.node_id}, term ${info.term})`;
      } catch {
        // not up yet
      } finally {
        await client.close();
      }
    }
  }
  return null;
}

void main();
