import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { LOCK_FILE_NAME, RaftStorage } from '../../src/storage';
import { StorageIoError, StorageLockedError } from '../../src/util/errors';
import { removeDir, tempDir, waitUntil } from '../support/storage_model';

function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '']);
  assert.ok(typeof child.pid === 'number');
  return child.pid;
}

describe('RaftStorage data directory lock', () => {
  it('a second open in one process fails until the first closes', async () => {
    const dir = await tempDir();
    try {
      const first = await RaftStorage.open(dir, { fsync: false });
      assert.equal(
        fs.readFileSync(path.join(dir, LOCK_FILE_NAME), 'utf8').trim(),
        String(process.pid),
      );
      await assert.rejects(RaftStorage.open(dir, { fsync: false }), (error: unknown) => {
        assert.ok(error instanceof StorageLockedError);
        assert.equal(error.code, 'STORAGE_LOCKED');
        assert.match(error.message, /already open in this process/);
        assert.ok(error.message.includes(dir));
        return true;
      });
      await first.storage.close();
      assert.equal(fs.existsSync(path.join(dir, LOCK_FILE_NAME)), false);
      const second = await RaftStorage.open(dir, { fsync: false });
      await second.storage.close();
    } finally {
      await removeDir(dir);
    }
  });

  it('another live process holding the directory makes open fail naming its pid', async () => {
    const dir = await tempDir();
    const storage_module = path.resolve(__dirname, '../../src/storage/index.js');
    const script = `
      const { RaftStorage } = require(${JSON.stringify(storage_module)});
      RaftStorage.open(${JSON.stringify(dir)}, { fsync: false }).then(() => {
        process.stdout.write('ready\\n');
        process.stdin.on('end', () => process.exit(0));
        process.stdin.resume();
      }, (error) => { process.stderr.write(String(error)); process.exit(1); });`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      await waitUntil(
        () => output.includes('ready') || child.exitCode !== null,
        'the child to open the directory',
        10_000,
      );
      assert.equal(child.exitCode, null, 'child failed to open the directory');
      await assert.rejects(RaftStorage.open(dir, { fsync: false }), (error: unknown) => {
        assert.ok(error instanceof StorageLockedError);
        assert.match(error.message, new RegExp(`in use by process ${String(child.pid)}`));
        return true;
      });
    } finally {
      child.stdin.end();
      if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
      await removeDir(dir);
    }
  });

  it('a stale lock from a dead process is taken over', async () => {
    const dir = await tempDir();
    try {
      fs.writeFileSync(path.join(dir, LOCK_FILE_NAME), `${deadPid()}\n`);
      const { storage } = await RaftStorage.open(dir, { fsync: false });
      assert.equal(
        fs.readFileSync(path.join(dir, LOCK_FILE_NAME), 'utf8').trim(),
        String(process.pid),
      );
      await storage.close();
      assert.deepEqual(
        fs.readdirSync(dir),
        ['raft.wal'],
        'no temporary lock files are left behind',
      );
    } finally {
      await removeDir(dir);
    }
  });

  it('a lock with our pid that we do not hold (restarted container) is stale', async () => {
    const dir = await tempDir();
    try {
      fs.writeFileSync(path.join(dir, LOCK_FILE_NAME), `${process.pid}\n`);
      const { storage } = await RaftStorage.open(dir, { fsync: false });
      await storage.close();
    } finally {
      await removeDir(dir);
    }
  });

  it('a lock held by a live process we did not start is respected', async () => {
    const dir = await tempDir();
    try {
      fs.writeFileSync(path.join(dir, LOCK_FILE_NAME), `${process.ppid}\n`);
      await assert.rejects(
        RaftStorage.open(dir, { fsync: false }),
        new RegExp(`in use by process ${process.ppid}`),
      );
      assert.equal(
        fs.readFileSync(path.join(dir, LOCK_FILE_NAME), 'utf8').trim(),
        String(process.ppid),
      );
    } finally {
      await removeDir(dir);
    }
  });

  it('a lock file with unexpected content is not touched', async () => {
    const dir = await tempDir();
    try {
      fs.writeFileSync(path.join(dir, LOCK_FILE_NAME), 'not a pid');
      await assert.rejects(RaftStorage.open(dir, { fsync: false }), (error: unknown) => {
        assert.ok(error instanceof StorageLockedError);
        assert.match(error.message, /unexpected content/);
        return true;
      });
    } finally {
      await removeDir(dir);
    }
  });

  it('a data directory that cannot be created is a clear StorageIoError', async () => {
    const dir = await tempDir();
    try {
      const not_a_dir = path.join(dir, 'file');
      fs.writeFileSync(not_a_dir, 'x');
      await assert.rejects(RaftStorage.open(path.join(not_a_dir, 'data')), (error: unknown) => {
        assert.ok(error instanceof StorageIoError);
        assert.match(error.message, /cannot create data directory .*file\/data/);
        return true;
      });
    } finally {
      await removeDir(dir);
    }
  });

  it('two opens racing in one process: exactly one wins', async () => {
    const dir = await tempDir();
    try {
      const results = await Promise.allSettled([
        RaftStorage.open(dir, { fsync: false }),
        RaftStorage.open(dir, { fsync: false }),
      ]);
      const won = results.filter((result) => result.status === 'fulfilled');
      assert.equal(won.length, 1);
      for (const result of results) {
        if (result.status === 'fulfilled') await result.value.storage.close();
        else assert.ok(result.reason instanceof StorageLockedError);
      }
    } finally {
      await removeDir(dir);
    }
  });
});
