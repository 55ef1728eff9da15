/**
 * Operating a live cluster: /metrics parsed by a strict Prometheus text
 * parser and checked against INFO, /ready following quorum, the default log
 * of a failover, and `kvcli cluster --once`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as http from 'node:http';
import { join } from 'node:path';
import { parsePrometheusText, sampleValue, type Family } from '../support/prom_text';
import { REPO_ROOT, pollUntil, type TestCluster, withCluster } from './cluster_harness';
import { freePort } from '../support/ports';

const TEST_TIMEOUT_MS = 120_000;
const KVCLI = join(REPO_ROOT, 'kvcli');

interface HttpReply {
  status: number;
  content_type: string;
  body: string;
}

function httpGet(port: number, path: string): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path, timeout: 2000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          content_type: String(response.headers['content-type']),
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    request.on('timeout', () => request.destroy(new Error('http timeout')));
    request.on('error', reject);
  });
}

/** A scrape taken between two identical INFO replies, so both describe the same state. */
async function stableScrape(
  cluster: TestCluster,
  index: number,
  metrics_port: number,
): Promise<{ families: Map<string, Family>; info: Record<string, string> }> {
  const fields = ['term', 'commit_index', 'last_applied', 'last_log_index', 'leader_id', 'role'];
  return pollUntil(`a stable scrape of node ${index + 1}`, 10_000, async () => {
    const before = await cluster.info(index);
    const scrape = await httpGet(metrics_port, '/metrics');
    const after = await cluster.info(index);
    if (before === null || after === null) return null;
    if (fields.some((field) => before[field] !== after[field])) return null;
    assert.equal(scrape.status, 200);
    assert.match(scrape.content_type, /^text\/plain; version=0\.0\.4/);
    return { families: parsePrometheusText(scrape.body), info: after };
  });
}

function checkAgainstInfo(families: Map<string, Family>, info: Record<string, string>): void {
  const value = (name: string, labels: Record<string, string> = {}): number =>
    sampleValue(families, name, labels);
  assert.equal(value('kvstore_raft_term'), Number(info.term));
  assert.equal(value('kvstore_raft_commit_index'), Number(info.commit_index));
  assert.equal(value('kvstore_raft_applied_index'), Number(info.last_applied));
  assert.equal(value('kvstore_raft_last_log_index'), Number(info.last_log_index));
  assert.equal(value('kvstore_raft_leader_id'), Number(info.leader_id));
  assert.equal(value('kvstore_raft_role', { role: String(info.role) }), 1);
  assert.equal(value('kvstore_keys'), Number(info.keys));
  for (const [key, line] of Object.entries(info)) {
    const peer = /^peer(\d+)$/.exec(key)?.[1];
    if (peer === undefined) continue;
    const out_up = line.includes('out=connected') ? 1 : 0;
    assert.equal(value('kvstore_peer_link_up', { peer, direction: 'out' }), out_up, line);
  }
  assert.ok(value('kvstore_wal_fsync_duration_seconds_count') > 0, 'fsyncs observed');
  assert.ok(value('process_resident_memory_bytes') > 0);
  assert.ok(families.has('nodejs_eventloop_lag_seconds'));
}

async function readyStatus(port: number): Promise<number> {
  return (await httpGet(port, '/ready')).status;
}

function runKvcli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [KVCLI, ...args], { timeout: 10_000 }, (error, stdout) =>
      error === null ? resolve(stdout) : reject(error),
    );
  });
}

test('metrics agree with INFO; /ready follows quorum; the default log shows the failover', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const metrics_ports = [await freePort(), await freePort(), await freePort()];
  await withCluster(
    {
      nodes: 3,
      log_level: null,
      node_config: (index) => [`metrics_port ${metrics_ports[index]}`],
    },
    async (cluster) => {
      const leader = await cluster.waitForLeader();
      const client = cluster.client();
      for (let i = 0; i < 20; i++) await client.set(`key${i}`, `value${i}`);
      assert.deepEqual(await client.get('key3'), ['value3']);
      await client.close();
      let set_commands = 0;
      for (const index of [0, 1, 2]) {
        const port = metrics_ports[index]!;
        await pollUntil('applied everywhere', 10_000, async () => {
          const info = await cluster.info(index);
          return info !== null && info.keys === '20' ? true : null;
        });
        const { families, info } = await stableScrape(cluster, index, port);
        checkAgainstInfo(families, info);
        const sets = families.get('kvstore_commands_total')?.samples ?? [];
        for (const s of sets) if (s.labels.command === 'set') set_commands += s.value;
        if (index === leader) {
          const ok = sampleValue(families, 'kvstore_raft_proposals_total', { result: 'ok' });
          assert.ok(ok >= 20, `leader counted ${ok} proposals`);
        }
        if (index !== leader) {
          // A follower hears the leader's requests on an inbound link, recently.
          const link = info[`peer${leader + 1}`] ?? '';
          assert.match(link, /out=connected,in=connected,last_contact_ms=\d+/, link);
          const age_ms = Number(/last_contact_ms=(\d+)/.exec(link)?.[1]);
          assert.ok(age_ms < 2000, link);
        }
        const health = await httpGet(port, '/health');
        assert.equal(health.status, 200, health.body);
        assert.equal(await readyStatus(port), 200);
      }
      // A client's SET counts once where it arrived and once more where it was forwarded to.
      assert.ok(set_commands >= 20, `set commands counted: ${set_commands}`);

      const table = await runKvcli(['-p', String(cluster.nodes[0]!.client_port), 'cluster']);
      assert.equal(
        table.split('\n').filter((l) => /^\d+ +127\.0\.0\.1:\d+/.test(l)).length,
        3,
        table,
      );
      assert.match(table, new RegExp(`leader: node ${leader + 1} `));

      // Failover: the default log level shows who leads now, one line per change.
      const survivors = [0, 1, 2].filter((i) => i !== leader);
      await cluster.kill(leader);
      const next = await cluster.waitForLeader(15_000, survivors);
      const next_log = cluster.nodes[next]!.stderr;
      await pollUntil('role lines in the default log', 5000, () =>
        /INFO node\d+ role leader in term \d+/.test(cluster.nodes[next]!.stderr) ? true : null,
      );
      assert.match(next_log, /INFO node\d+ role candidate in term \d+/);
      assert.match(next_log, new RegExp(`INFO node\\d+ peer ${leader + 1} down`));
      assert.ok(next_log.split('\n').length < 60, `too chatty:\n${next_log}`);

      // The last peer gone: no quorum, not ready; peers back: ready again.
      const other = survivors.find((i) => i !== next)!;
      const port = metrics_ports[next]!;
      await pollUntil('ready with a quorum', 10_000, async () =>
        (await readyStatus(port)) === 200 ? true : null,
      );
      await cluster.kill(other);
      await pollUntil('/ready 503 without a quorum', 15_000, async () =>
        (await readyStatus(port)) === 503 ? true : null,
      );
      cluster.start(leader);
      cluster.start(other);
      await pollUntil('/ready 200 once the peers return', 20_000, async () =>
        (await readyStatus(port)) === 200 ? true : null,
      );
    },
  );
});
