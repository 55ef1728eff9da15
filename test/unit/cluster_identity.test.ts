import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import { loadClusterSecret } from '../../src/config/fingerprint';
import { ConfigError } from '../../src/util/errors';
import { LIMITS } from '../../src/util/limits';

const BASE = 'follower_info 127.0.0.1:8001\nfollower_info 127.0.0.1:8002\n';

test('cluster_name and cluster_secret_file are optional; the secret path is made absolute', () => {
  const plain = parseConfig(BASE, 'node.conf', '/srv');
  assert.equal(plain.cluster_name, '');
  assert.equal(plain.cluster_secret_file, null);
  const named = parseConfig(
    `${BASE}cluster_name blue\ncluster_secret_file secrets/raft\n`,
    'node.conf',
    '/srv',
  );
  assert.equal(named.cluster_name, 'blue');
  assert.equal(named.cluster_secret_file, '/srv/secrets/raft');
  assert.throws(
    () => parseConfig(`${BASE}cluster_name a\ncluster_name b\n`, 'node.conf', '/srv'),
    ConfigError,
  );
});

test('loadClusterSecret trims a final newline, refuses short, huge or missing files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kv-secret-'));
  try {
    const file = join(dir, 'secret');
    writeFileSync(file, 'sixteen-bytes-or-more\n');
    assert.deepEqual(loadClusterSecret(file), Buffer.from('sixteen-bytes-or-more'));
    writeFileSync(file, 'short\n');
    assert.throws(() => loadClusterSecret(file), /at least 16 bytes/);
    writeFileSync(file, Buffer.alloc(LIMITS.cluster_secret_bytes_max + 1, 0x61));
    assert.throws(() => loadClusterSecret(file), /larger than/);
    assert.throws(() => loadClusterSecret(join(dir, 'missing')), /cannot read cluster secret/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
