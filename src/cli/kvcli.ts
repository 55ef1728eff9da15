/**
 * kvcli: a redis-cli-like command-line client for the cluster.
 *
 *   kvcli [-h host] [-p port] [--nodes host:port,...] [--json] [--timeout ms] [command ...]
 *
 * With a command it runs it once, prints the reply and exits (0 on success,
 * 1 on an error reply or a failure, 2 on bad usage). Without one it reads
 * commands: at an interactive prompt on a terminal (line editing, history in
 * ~/.kvcli_history or $KVCLI_HISTFILE, empty to disable), or line by line
 * from a pipe with no prompt, exiting 1 if any command failed.
 *
 * SET stores WORDS: every value argument of SET is split on whitespace, so
 * `SET CS06142 "Cloud Computing"` sends the four bulk strings SET, CS06142,
 * Cloud, Computing — what the seed's lab sends — and GET returns two words.
 * Quoting keeps its meaning for keys and for every other command.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { KvClient } from '../client/kv_client';
import { KvClientError, ServerError } from '../client/errors';
import { readLines } from '../client/line_reader';
import { formatReplyText, replyToJson, type JsonValue } from '../client/reply_format';
import { splitCommandLine } from '../client/split_args';
import { LIMITS } from '../util/limits';
import { LimitExceededError } from '../util/errors';
import { runLiveView } from '../ops/live_view';

export interface CliIo {
  stdin: Readable & { isTTY?: boolean };
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}

export interface CliOptions {
  nodes: string[];
  json: boolean;
  timeout_ms: number;
  command: string[];
}

const DEFAULT_NODE = '127.0.0.1:8001';
const DEFAULT_TIMEOUT_MS = 5000;

const USAGE =
  `Usage: kvcli [-h host] [-p port] [--nodes ` +
  `host:port,...] [--json] [--timeout ms] [command ...]
  -h host          node host (default 127.0.0.1)
  -p port          node port (default 8001)
  --nodes list     comma-separated node addresses to fail over between
  --json           print replies as JSON (one document per line)
  --cluster-status the live cluster view (same as the command: cluster [--once])
  --timeout ms     per-command deadline, retries included (default ${DEFAULT_TIMEOUT_MS})
  --help           show this text
Without a command, kvcli reads commands from the terminal or from stdin.
kvcli cluster: a table of every node (role, term, indexes, lag, links), refreshed every
second from any one node's address; q quits. --once (or no terminal) prints it once.`;

const HELP = `Commands:
  SET key word [word ...]   store the value words (a quoted value is split into words)
  GET key                   the stored words, or (nil)
  DEL key [key ...]         delete keys; replies how many existed
  PING                      PONG
  INFO                      node and cluster status
  help                      this text
  quit | exit               leave
Quote arguments "like \\"this\\"\\n" (escapes \\" \\\\ \\n \\r \\t \\xHH) or 'like this'.
Note: a stored value that is the single word nil reads back as (nil).`;

export function parseCliArgs(
  argv: readonly string[],
): CliOptions | { usage_error: string } | { help: true } {
  let host: string | null = null;
  let port: string | null = null;
  const listed: string[] = [];
  let json = false;
  let timeout_text = String(DEFAULT_TIMEOUT_MS);
  let i = 0;
  const value = (flag: string): string | { usage_error: string } => {
    const next = argv[i + 1];
    i += 2;
    return next === undefined ? { usage_error: `${flag} needs a value` } : next;
  };
  while (i < argv.length) {
    const arg = argv[i] as string;
    if (arg === '--help') return { help: true };
    if (arg === '--json') {
      json = true;
      i += 1;
      continue;
    }
    if (arg === '-h' || arg === '-p' || arg === '--nodes' || arg === '--timeout') {
      const text = value(arg);
      if (typeof text !== 'string') return text;
      if (arg === '-h') host = text;
      else if (arg === '-p') port = text;
      else if (arg === '--nodes')
        listed.push(
          ...text
            .split(',')
            .map((node) => node.trim())
            .filter((node) => node !== ''),
        );
      else timeout_text = text;
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1 && !/^-\d/.test(arg))
      return { usage_error: `unknown option ${arg}` };
    break;
  }
  if (port !== null && !/^\d{1,5}$/.test(port)) return { usage_error: `bad port ${port}` };
  const timeout_ms = Number(timeout_text);
  if (!(timeout_ms > 0) || !Number.isFinite(timeout_ms))
    return { usage_error: `bad timeout ${timeout_text}` };
  const nodes: string[] = [];
  if (host !== null || port !== null) nodes.push(`${host ?? '127.0.0.1'}:${port ?? '8001'}`);
  for (const node of listed) if (!nodes.includes(node)) nodes.push(node);
  if (nodes.length === 0) nodes.push(DEFAULT_NODE);
  return { nodes, json, timeout_ms, command: argv.slice(i) };
}

/**
 * The server stores value words, so SET's value arguments are split on
 * whitespace; an argument that is empty or all whitespace is sent as is.
 */
export function expandSetWords(args: readonly Buffer[]): Buffer[] {
  const name = args[0]?.toString('latin1').toUpperCase();
  if (name !== 'SET' || args.length < 3) return [...args];
  const expanded = args.slice(0, 2);
  for (const arg of args.slice(2)) {
    const words = splitOnWhitespace(arg);
    if (words.length === 0) expanded.push(arg);
    else expanded.push(...words);
  }
  return expanded;
}

function splitOnWhitespace(bytes: Buffer): Buffer[] {
  const words: Buffer[] = [];
  let start = -1;
  for (let i = 0; i <= bytes.length; i++) {
    const byte = bytes[i];
    const space =
      byte === undefined || byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
    if (space && start !== -1) {
      words.push(bytes.subarray(start, i));
      start = -1;
    } else if (!space && start === -1) {
      start = i;
    }
  }
  return words;
}

/** Runs one command and prints its outcome; returns whether it succeeded. */
class CommandRunner {
  constructor(
    private readonly client: KvClient,
    private readonly out: Writable,
    private readonly json: boolean,
  ) {}

  async run(args: readonly Buffer[]): Promise<boolean> {
    const command = args[0]?.toString('utf8').toUpperCase() ?? '';
    try {
      const reply = await this.client.command(expandSetWords(args));
      this.print(
        this.json
          ? JSON.stringify(replyToJson(reply, { command }))
          : formatReplyText(reply, { command }),
      );
      return true;
    } catch (error) {
      if (error instanceof ServerError) {
        this.print(this.json ? JSON.stringify({ error: error.reply }) : `(error) ${error.reply}`);
      } else if (error instanceof KvClientError) {
        const document: JsonValue = { error: error.message, code: error.code };
        this.print(this.json ? JSON.stringify(document) : `(error) ${error.code} ${error.message}`);
      } else {
        throw error;
      }
      return false;
    }
  }

  print(text: string): void {
    this.out.write(`${text}\n`);
  }
}

type LineOutcome = 'ok' | 'failed' | 'quit';

async function runLine(line: string, runner: CommandRunner): Promise<LineOutcome> {
  const args = splitCommandLine(line);
  if (args === null) {
    runner.print('(error) Invalid argument(s): unbalanced quotes');
    return 'failed';
  }
  const name = args[0]?.toString('utf8').toLowerCase();
  if (name === undefined) return 'ok';
  if (args.length === 1 && (name === 'quit' || name === 'exit')) return 'quit';
  if (args.length === 1 && name === 'help') {
    runner.print(HELP);
    return 'ok';
  }
  return (await runner.run(args)) ? 'ok' : 'failed';
}

/** Commands from a pipe or file: no prompt, replies only. */
async function runPiped(io: CliIo, runner: CommandRunner): Promise<number> {
  let failed = false;
  try {
    for await (const line of readLines(io.stdin, LIMITS.kvcli_line_bytes_max)) {
      const outcome = await runLine(line, runner);
      if (outcome === 'quit') break;
      if (outcome === 'failed') failed = true;
    }
  } catch (error) {
    if (!(error instanceof LimitExceededError)) throw error;
    runner.print(`(error) ${error.message}`);
    return 1;
  }
  return failed ? 1 : 0;
}

/** The interactive prompt: line editing, history, the current node in the prompt. */
async function runInteractive(io: CliIo, client: KvClient, runner: CommandRunner): Promise<number> {
  const history_file = historyPath(io.env);
  const rl = readline.createInterface({
    input: io.stdin,
    output: io.stdout,
    terminal: true,
    history: loadHistory(history_file),
    historySize: LIMITS.kvcli_history_lines_max,
    removeHistoryDuplicates: true,
  });
  rl.on('history', (lines: string[]) => saveHistory(history_file, lines));
  rl.on('SIGINT', () => rl.close());
  const prompt = (): void => {
    rl.setPrompt(`${client.currentNode()}> `);
    rl.prompt();
  };
  // Lines typed or pasted while a command runs wait their turn.
  let queue: Promise<void> = Promise.resolve();
  let quitting = false;
  rl.on('line', (line) => {
    queue = queue.then(async () => {
      if (quitting) return;
      if ((await runLine(line, runner)) === 'quit') {
        quitting = true;
        rl.close();
        return;
      }
      prompt();
    });
  });
  const closed = new Promise<void>((resolve) => rl.on('close', resolve));
  prompt();
  await closed;
  await queue;
  return 0;
}

function historyPath(env: NodeJS.ProcessEnv): string | null {
  const configured = env.KVCLI_HISTFILE;
  if (configured !== undefined) return configured === '' ? null : configured;
  return path.join(os.homedir(), '.kvcli_history');
}

/** readline wants newest first; the file keeps oldest first, like redis-cli's. */
function loadHistory(file: string | null): string[] {
  if (file === null) return [];
  try {
    const lines = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => line !== '');
    return lines.slice(-LIMITS.kvcli_history_lines_max).reverse();
  } catch {
    return [];
  }
}

function saveHistory(file: string | null, newest_first: readonly string[]): void {
  if (file === null) return;
  const lines = newest_first.slice(0, LIMITS.kvcli_history_lines_max).reverse();
  try {
    fs.writeFileSync(file, lines.length === 0 ? '' : `${lines.join('\n')}\n`, { mode: 0o600 });
  } catch {
    // History is a convenience: an unwritable home directory must not stop the client.
  }
}

export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const cluster_status = argv.includes('--cluster-status');
  const parsed = parseCliArgs(argv.filter((arg) => arg !== '--cluster-status'));
  if ('help' in parsed) {
    io.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if ('usage_error' in parsed) {
    io.stderr.write(`kvcli: ${parsed.usage_error}\n${USAGE}\n`);
    return 2;
  }
  const view = clusterViewRequest(parsed.command, cluster_status);
  if (view !== null) {
    const title = `kvcli cluster (from ${parsed.nodes.join(', ')})`;
    await runLiveView({ seeds: parsed.nodes, stdin: io.stdin, stdout: io.stdout, title, ...view });
    return 0;
  }
  let client: KvClient;
  try {
    client = new KvClient({ nodes: parsed.nodes, call_timeout_ms: parsed.timeout_ms });
  } catch (error) {
    if (!(error instanceof KvClientError)) throw error;
    io.stderr.write(`kvcli: ${error.message}\n`);
    return 2;
  }
  const runner = new CommandRunner(client, io.stdout, parsed.json);
  try {
    if (parsed.command.length > 0) {
      return (await runner.run(parsed.command.map((arg) => Buffer.from(arg, 'utf8')))) ? 0 : 1;
    }
    return io.stdin.isTTY === true
      ? await runInteractive(io, client, runner)
      : await runPiped(io, runner);
  } finally {
    await client.close();
  }
}

/** `cluster`, `cluster --once` or --cluster-status: the live view; null for other commands. */
function clusterViewRequest(command: string[], flag: boolean): { once: boolean } | null {
  const [first, second] = command;
  const once = second === '--once';
  if (flag && command.length === 0) return { once: false };
  if (first?.toLowerCase() !== 'cluster' || command.length > 2) return null;
  return command.length === 1 || once ? { once } : null;
}

/** Entry point for the `kvcli` executable. */
export function runKvcli(): void {
  const io: CliIo = {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
  };
  // A reader that went away (`kvcli ... | head`) ends the program quietly, as in other CLIs.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(process.exitCode ?? 0);
  });
  main(process.argv.slice(2), io).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(
        `kvcli: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
      process.exitCode = 1;
    },
  );
}

if (require.main === module) runKvcli();
