/**
 * `npm run bench:failover [-- --tries N --call-timeout-ms M]`: how long
 * writes stop when the leader of a 3-node cluster is killed with SIGKILL.
 *
 * Each try: wait for a leader and one acknowledged write; start a writer that
 * issues SETs one after another through the two other nodes (which forward to
 * whoever leads), with a short per-call timeout and an immediate retry on any
 * failure; kill -9 the leader; the failover time is from the kill to the
 * acknowledgement of the first SET that was sent after the kill. Then the
 * killed node is restarted and must catch up (its commit_index equals the
 * leader's) before the next try, so every try starts from a healthy cluster.
 * Figures go in notes, never in tests.
 */
import { performance } from 'node:perf_hooks';
import type { KvClient } from '../src/client';
import { pollUntil, TestCluster } from '../test/integration/cluster_harness';

interface Options {
  tries: number;
  call_timeout_ms: number;
}

interface TryResult {
  killed: number;
  failover_ms: number;
  failed_calls: number;
  new_leader: number;
  new_term: string;
  catch_up_ms: number;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { tries: 10, call_timeout_ms: 250 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = Number(argv[i + 1]);
    if (flag === '--tries' && Number.isInteger(value) && value > 0) options.tries = value;
    else if (flag === '--call-timeout-ms' && value > 0) options.call_timeout_ms = value;
    else
      throw new Error(
        `usage: failover [--tries N] [--call-timeout-ms M]; bad argument '${flag ?? ''}'`,
      );
    i += 1;
  }
  return options;
}

/**
 * One SET at a time through the survivors, forever until stopped; remembers each acknowledged SET's
 * send time.
 */
class Writer {
  private stopped = false;
  private sequence = 0;
  failed_calls = 0;
  private readonly acks: Array<{ sent_ms: number; acked_ms: number }> = [];
  private readonly done: Promise<void>;

  constructor(
    private readonly client: KvClient,
    private readonly key_prefix: string,
  ) {
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      this.sequence += 1;
      const sent_ms = performance.now();
      try {
        await this.client.set(`${this.key_prefix}:${this.sequence % 1000}`, `v${this.sequence}`);
        this.acks.push({ sent_ms, acked_ms: performance.now() });
        if (this.acks.length > 10_000) this.acks.splice(0, 5_000);
      } catch {
        // Retry at once: the point is to notice the first moment writes work again
        this.failed_calls += 1;
      }
    }
  }

  get ack_count(): number {
    return this.acks.length;
  }

  /** The first acknowledgement of a SET sent at or after `since_ms`. */
  firstAckSentAfter(since_ms: number): number | null {
    for (const ack of this.acks) if (ack.sent_ms >= since_ms) return ack.acked_ms;
    return null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

async function commitIndex(cluster: TestCluster, index: number): Promise<number | null> {
  const info = await cluster.info(index);
  const value = info?.commit_index;
  return value === undefined ? null : Number(value);
}

async function runTry(cluster: TestCluster, attempt: number, options: Options): Promise<TryResult> {
  const leader = await cluster.waitForLeader(15_000);
  const probe = cluster.client(undefined, { call_timeout_ms: 2000 });
  await pollUntil('a successful write', 15_000, async () => {
    await probe.set(`failover:probe`, `try${attempt}`);
    return true;
  });
  await probe.close();

  const survivors = cluster.nodes.map((n) => n.index).filter((i) => i !== leader);
  const client = cluster.client(survivors, { call_timeout_ms: options.call_timeout_ms });
  const writer = new Writer(client, `failover:${attempt}`);
  // Let the writer reach a steady state (connections open, forwarding warm) before the kill.
  await pollUntil('the writer to get acknowledgements', 10_000, () =>
    writer.ack_count > 0 ? true : null,
  );
  await new Promise((resolve) => setTimeout(resolve, 200));

  const failed_before = writer.failed_calls;
  const killed_ms = performance.now();
  await cluster.kill(leader);
  const acked_ms = await pollUntil(
    'a write after the kill',
    30_000,
    () => writer.firstAckSentAfter(killed_ms),
    1,
  );
  const failed_calls = writer.failed_calls - failed_before;
  await writer.stop();
  await client.close();

  const new_leader = await cluster.waitForLeader(15_000, survivors);
  const new_term = (await cluster.info(new_leader))?.term ?? '?';
  const restarted_ms = performance.now();
  cluster.start(leader);
  await pollUntil(`node ${leader + 1} to catch up`, 30_000, async () => {
    const target = await commitIndex(cluster, new_leader);
    const own = await commitIndex(cluster, leader);
    return target !== null && own !== null && own === target ? true : null;
  });
  return {
    killed: leader,
    failover_ms: acked_ms - killed_ms,
    failed_calls,
    new_leader,
    new_term,
    catch_up_ms: performance.now() - restarted_ms,
  };
}

/** Nearest-rank percentile of an ascending array. */
function percentile(sorted: readonly number[], fraction: number): number {
  return (
    sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1))] ?? 0
  );
}

function median(sorted: readonly number[]): number {
  const middle = sorted.length / 2;
  if (sorted.length % 2 === 1) return sorted[Math.floor(middle)] ?? 0;
  return ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const cluster = await TestCluster.create({ nodes: 3 });
  const results: number[] = [];
  try {
    cluster.startAll();
    for (let attempt = 1; attempt <= options.tries; attempt++) {
      const r = await runTry(cluster, attempt, options);
      results.push(r.failover_ms);
      console.log(
        `try ${attempt}: killed leader node ${r.killed + 1}; first write ` +
          `acknowledged ${r.failover_ms.toFixed(1)} ms after the kill ` +
          `(${r.failed_calls} failed calls); new leader node ${r.new_leader + 1} term ` +
          `${r.new_term}; restarted node caught up in ${r.catch_up_ms.toFixed(0)} ms`,
      );
    }
  } catch (error) {
    console.error(cluster.logs());
    throw error;
  } finally {
    await cluster.destroy();
  }
  const sorted = [...results].sort((a, b) => a - b);
  const f = (ms: number): string => ms.toFixed(1);
  console.log(
    `failover: median ${f(median(sorted))} ms over ${sorted.length} tries ` +
      `(p90 ${f(percentile(sorted, 0.9))}, min ${f(sorted[0] ?? 0)}, ` +
      `max ${f(sorted[sorted.length - 1] ?? 0)})`,
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
