/**
 * NodeMetrics without a cluster: the exposition parses strictly, status gauges
 * follow the snapshot at scrape time, hooks count what they are told, and the
 * reply labels stay within a bounded set. Plus the live view's table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/config';
import { nodeViewFromInfo, renderClusterTable } from '../../src/ops/cluster_view';
import { readiness } from '../../src/ops/http_server';
import { NodeMetrics } from '../../src/ops/metrics';
import type { InfoInputs } from '../../src/server/info';
import { parsePrometheusText, sampleValue } from '../support/prom_text';

const CONFIG = parseConfig(
  'follower_info 127.0.0.1:8001\nfollower_info 127.0.0.1:8002\nmetrics_port 9100\n',
  'test.conf',
  '/tmp',
);

function snapshot(overrides: Partial<InfoInputs['status']> = {}, applied = 7): InfoInputs {
  return {
    config: CONFIG,
    status: {
      id: 1,
      role: 'leader',
      term: 4,
      vote: 1,
      leader_id: 1,
      commit_index: 9,
      last_log_index: 10,
      last_log_term: 4,
      snapshot_index: 0,
      snapshot_term: 0,
      applied_index: 7,
      stable_index: 10,
      uncommitted_bytes: 12,
      pending_reads: 0,
      transfer_target: 0,
      peers: [
        {
          id: 2,
          match: 6,
          next: 7,
          state: 'replicate',
          pending_snapshot: 0,
          inflight_messages: 1,
          recent_active: true,
        },
      ],
      ...overrides,
    },
    last_applied: applied,
    key_count: 3,
    data_bytes: 30,
    pending_writes: 1,
    pending_reads: 0,
    expiring_keys: 0,
    started_ms: 0,
    commands_processed: 0,
    peers: [
      {
        id: 2,
        outbound: 'connected',
        inbound_connected: false,
        queued_bytes: 5,
        dropped_messages: 2,
        reconnects: 0,
        inbound: 'idle',
        last_contact_age_ms: 1500,
      },
    ],
    storage: null,
    connected_clients: 4,
  };
}

test('a scrape parses strictly and reads the status at scrape time', async () => {
  let current = snapshot();
  const metrics = new NodeMetrics({ config: CONFIG, version: '1.2.3', snapshot: () => current });
  let families = parsePrometheusText(await metrics.scrape());
  assert.equal(sampleValue(families, 'kvstore_raft_term'), 4);
  assert.equal(sampleValue(families, 'kvstore_raft_role', { role: 'leader' }), 1);
  assert.equal(sampleValue(families, 'kvstore_raft_role', { role: 'follower' }), 0);
  assert.equal(sampleValue(families, 'kvstore_raft_replication_lag_entries', { peer: '2' }), 4);
  assert.equal(sampleValue(families, 'kvstore_peer_link_up', { peer: '2', direction: 'in' }), 0);
  assert.equal(sampleValue(families, 'kvstore_peer_dropped_messages_total', { peer: '2' }), 2);
  assert.equal(sampleValue(families, 'kvstore_peer_last_contact_seconds', { peer: '2' }), 1.5);
  assert.equal(sampleValue(families, 'kvstore_client_connections'), 4);
  assert.equal(families.get('kvstore_raft_proposals_total')?.type, 'counter');
  current = snapshot({ role: 'follower', term: 5, leader_id: 2 });
  families = parsePrometheusText(await metrics.scrape());
  assert.equal(sampleValue(families, 'kvstore_raft_term'), 5);
  assert.equal(sampleValue(families, 'kvstore_raft_leader_id'), 2);
  const lag = families.get('kvstore_raft_replication_lag_entries');
  assert.equal(lag?.samples.length, 0, 'a follower reports no replication lag');
});

test('hooks count elections, leader changes, replies and WAL batches', async () => {
  const metrics = new NodeMetrics({ config: CONFIG, version: '1', snapshot: () => null });
  const follower = { role: 'follower' as const, term: 1, leader_id: 2 };
  metrics.onSoftState(follower, { role: 'pre_candidate', term: 1, leader_id: 0 });
  metrics.onSoftState(
    { role: 'pre_candidate', term: 1, leader_id: 0 },
    { role: 'candidate', term: 2, leader_id: 0 },
  );
  metrics.onWalBatch(100, 2.5);
  const handler = metrics.instrument((args) => ({
    reply: Buffer.from(args[0]?.toString() === 'GET' ? '$1\r\nx\r\n' : '-TRYAGAIN busy\r\n'),
  }));
  await handler([Buffer.from('GET'), Buffer.from('k')], { id: 1, remote: '', tags: new Set() });
  await handler([Buffer.from('SET')], { id: 1, remote: '', tags: new Set() });
  await handler([Buffer.from('FLUSHALL')], { id: 1, remote: '', tags: new Set() });
  const families = parsePrometheusText(await metrics.scrape());
  const value = (name: string, labels: Record<string, string> = {}): number =>
    sampleValue(families, name, labels);
  assert.equal(value('kvstore_raft_elections_started_total', { phase: 'prevote' }), 1);
  assert.equal(value('kvstore_raft_elections_started_total', { phase: 'vote' }), 1);
  assert.equal(value('kvstore_raft_leader_changes_seen_total'), 1);
  assert.equal(value('kvstore_wal_fsync_duration_seconds_sum'), 0.0025);
  assert.equal(value('kvstore_wal_written_bytes_total'), 100);
  assert.equal(value('kvstore_commands_total', { command: 'get', result: 'ok' }), 1);
  assert.equal(value('kvstore_commands_total', { command: 'set', result: 'tryagain' }), 1);
  assert.equal(value('kvstore_commands_total', { command: 'other', result: 'tryagain' }), 1);
  assert.equal(value('kvstore_request_duration_seconds_count', { command: 'get' }), 1);
});

test('ready needs a known leader and applied close to commit', () => {
  assert.equal(readiness(null, 10).ready, false);
  assert.equal(readiness(snapshot({ leader_id: 0 }), 10).ready, false);
  assert.equal(readiness(snapshot({ commit_index: 100 }, 89), 10).ready, false);
  assert.equal(readiness(snapshot({ commit_index: 100 }, 90), 10).ready, true);
});

test('the live view table has one row per node with link symbols and lag', () => {
  const leader = nodeViewFromInfo('127.0.0.1:8001', {
    node_id: '1',
    role: 'leader',
    term: '3',
    leader_id: '1',
    commit_index: '10',
    last_applied: '10',
    peer2: 'id=2,addr=127.0.0.1:8002,out=connected,in=idle,last_contact_ms=5',
  });
  const follower = nodeViewFromInfo('127.0.0.1:8002', {
    node_id: '2',
    role: 'follower',
    term: '3',
    commit_index: '8',
    last_applied: '7',
    peer1: 'id=1,addr=127.0.0.1:8001,out=down,in=connected,last_contact_ms=5',
  });
  const lines = renderClusterTable([leader, follower]);
  assert.equal(lines.length, 3);
  assert.match(lines[1]!, /^1 +127\.0\.0\.1:8001 +leader +3 +10 +10 +0 +2:\+\./);
  assert.match(lines[2]!, /^2 +127\.0\.0\.1:8002 +follower +3 +8 +7 +3 +1:-\+/);
});
