/**
 * The node binary's command-line surface: --version, and --check-config on a
 * valid file (resolved configuration, exit 0) and a broken one (one line
 * naming file:line, exit 1). Nothing is started.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE_BIN, REPO_ROOT } from './cluster_harness';

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [NODE_BIN, ...args], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('--version prints the package version', () => {
  const { version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));
  const result = run(['--version']);
  assert.equal(result.status, 0);
  assert.equal(result.stdout.trim(), `kvstoreraftsystem ${version}`);
});

test('--check-config prints the resolved configuration of a valid file and exits 0', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kv-cli-'));
  const file = join(dir, 'node.conf');
  writeFileSync(
    file,
    '! node 2 of 3\nfollower_info 127.0.0.1:9302\nfollower_info 127.0.0.1:9301\n' +
      'follower_info 127.0.0.1:9303\ncluster_name demo\n',
  );
  const result = run(['--check-config', file]);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /^! this node: id 2 /m);
  assert.match(result.stdout, /^follower_info 127\.0\.0\.1:9302$/m);
  assert.match(result.stdout, /^tick_ms 50$/m, 'defaults are spelled out');
  assert.match(result.stdout, /^cluster_name demo$/m);
  assert.match(result.stdout, /^! cluster fingerprint [0-9a-f]{64}$/m);
});

test('--check-config names the file and line of an error and exits 1', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kv-cli-'));
  const file = join(dir, 'bad.conf');
  writeFileSync(file, 'follower_info 127.0.0.1:9301\ntick_ms fast\n');
  const result = run(['--check-config', file]);
  assert.equal(result.status, 1);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2`));
});
