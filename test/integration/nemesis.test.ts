/**
 * Jepsen in miniature against real processes: concurrent clients record a
 * history in real time while a nemesis kill -9s, restarts and pauses
 * (SIGSTOP/SIGCONT) nodes; after healing, the history must be linearizable
 * (the same Porcupine-style checker the simulator uses) and every node must
 * serve. The seed of the nemesis schedule is printed and replayable with
 * NEMESIS_SEED.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvClient } from '../../src/client';
import { SeededRandom } from '../../src/util/prng';
import { checkLinearizable, type HistoryOperation, type KvInput } from '../sim/linearizability';
import { callKv } from '../support/kv_history';
import { pollUntil, TestCluster } from './cluster_harness';

const NEMESIS_MS = 12_000;
const CLIENTS = 4;
const KEYS = 5;

test('nemesis: kill -9, restart and pause nodes under clients; the history is linearizable', {
  timeout: 180_000,
}, async (t) => {
  const seed =
    process.env.NEMESIS_SEED !== undefined
      ? Number(process.env.NEMESIS_SEED)
      : Date.now() % 1_000_000;
  t.diagnostic(`nemesis seed ${seed} (replay with NEMESIS_SEED=${seed})`);
  const rng = new SeededRandom(seed);
  const cluster = await TestCluster.create({ nodes: 3 });
  const history: HistoryOperation[] = [];
  const started = performance.now();
  const now = (): number => performance.now() - started;
  let running = true;
  const paused = new Set<number>();
  try {
    cluster.startAll();
    await cluster.waitForLeader();

    const client_loop = async (client_id: number): Promise<void> => {
      const client = new KvClient({ nodes: cluster.addresses(), call_timeout_ms: 1500 });
      const client_rng = new SeededRandom((seed * 31 + client_id) >>> 0);
      let counter = 0;
      try {
        while (running) {
          const key = `k${client_rng.int(KEYS)}`;
          const roll = client_rng.float();
          const input: KvInput =
            roll < 0.45
              ? { kind: 'get', key }
              : roll < 0.9
                ? { kind: 'set', key, value: `c${client_id}-${++counter}` }
                : { kind: 'del', key };
          const call_time = now();
          const outcome = await callKv(client, input);
          const output = outcome.kind === 'failed' ? null : outcome.output;
          if (output !== null) {
            history.push({
              client_id,
              input,
              output,
              call_time,
              return_time: output.kind === 'unknown' ? Infinity : now(),
            });
          }
        }
      } finally {
        await client.close();
      }
    };

    const nemesis = async (): Promise<string[]> => {
      const actions: string[] = [];
      const deadline = Date.now() + NEMESIS_MS;
      while (Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 700 + rng.int(1300)));
        const index = rng.int(3);
        const roll = rng.float();
        const running_nodes = cluster.nodes.filter(
          (n) => n.process !== null && !paused.has(n.index),
        ).length;
        if (roll < 0.35 && running_nodes >= 3) {
          await cluster.kill(index);
          actions.push(`kill ${index + 1}`);
        } else if (roll < 0.55 && running_nodes >= 3 && cluster.nodes[index]!.process !== null) {
          cluster.nodes[index]!.process!.kill('SIGSTOP');
          paused.add(index);
          actions.push(`pause ${index + 1}`);
        } else {
          for (const node of cluster.nodes) {
            if (paused.has(node.index)) {
              node.process?.kill('SIGCONT');
              paused.delete(node.index);
              actions.push(`resume ${node.index + 1}`);
            }
            if (node.process === null) {
              cluster.start(node.index);
              actions.push(`start ${node.index + 1}`);
            }
          }
        }
      }
      for (const node of cluster.nodes) {
        if (paused.has(node.index)) node.process?.kill('SIGCONT');
        if (node.process === null) cluster.start(node.index);
      }
      paused.clear();
      return actions;
    };

    const clients = Array.from({ length: CLIENTS }, (_, id) => client_loop(id));
    const actions = await nemesis();
    t.diagnostic(`nemesis: ${actions.join(', ')}`);
    // Healed: every node must come back and the cluster must serve again.
    await cluster.waitForLeader(15_000);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    running = false;
    await Promise.all(clients);
    const final = cluster.client();
    for (let k = 0; k < KEYS; k++) {
      const call_time = now();
      const words = await final.get(`k${k}`);
      history.push({
        client_id: 99,
        input: { kind: 'get', key: `k${k}` },
        output: { kind: 'get', value: words === null ? null : words.join(' ') },
        call_time,
        return_time: now(),
      });
    }
    await final.close();
    for (const node of cluster.nodes) {
      await pollUntil(`node ${node.index + 1} serves`, 15_000, async () =>
        (await cluster.info(node.index)) !== null ? true : null,
      );
    }
    const completed = history.filter((op) => op.output.kind !== 'unknown').length;
    const unknown = history.length - completed;
    t.diagnostic(
      `${history.length} operations (${completed} completed, ${unknown} with unknown outcome)`,
    );
    assert.ok(
      completed > 100,
      `clients made progress through the faults (${completed} completed operations)`,
    );
    const result = checkLinearizable(history);
    assert.ok(!result.timed_out, 'the checker finished');
    assert.ok(result.ok, `not linearizable (seed ${seed}): ${result.failure?.explanation ?? ''}`);
  } catch (error) {
    (error as Error).message += `\n${cluster.logs()}`;
    throw error;
  } finally {
    running = false;
    for (const node of cluster.nodes) if (paused.has(node.index)) node.process?.kill('SIGCONT');
    await cluster.destroy();
  }
});
