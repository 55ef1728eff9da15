/**
 * Smoke test of the benchmark's built-in load generator against a real 3-node cluster: a few
 * hundred pipelined SETs and GETs complete without error replies and the GETs find the values.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LoadSpec } from '../../bench/compare/load_spec';
import { runNodeLoad } from '../../bench/compare/node_load';
import { withCluster } from './cluster_harness';

test('the built-in load generator drives a real cluster', { timeout: 60_000 }, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    const leader = await cluster.waitForLeader(15_000);
    const port = cluster.nodes[leader]!.client_port;
    const base = { connections: 3, pipeline: 4, requests: 300, key_space: 10, value_bytes: 8 };
    const set: LoadSpec = { operation: 'SET', ...base };
    const written = await runNodeLoad('127.0.0.1', port, set);
    assert.equal(written.completed, 300);
    assert.equal(written.errors, 0);
    assert.ok(written.ops_per_s > 0 && written.p50_ms <= written.p999_ms);
    // Each of the 10 keys is missed by 300 random SETs with probability 0.9^300 (about 2e-14).
    const read = await runNodeLoad('127.0.0.1', port, { ...base, operation: 'GET' });
    assert.equal(read.completed, 300);
    assert.equal(read.errors, 0);
    assert.equal(read.misses, 0);
  });
});
