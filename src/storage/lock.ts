/**
 * An exclusive lock on a data directory, so that two processes (or two opens
 * in one process) never append to the same log. The lock is a file `LOCK`
 * holding the owner's pid. It appears atomically with its content (written to
 * a temporary name, then hard-linked into place), so a reader never sees an
 * empty lock. A lock whose pid is dead, or is our own pid while this process
 * does not hold it (a restarted container often reuses the pid), is stale and
 * is taken over.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeError, StorageIoError, StorageLockedError } from '../util/errors';

export const LOCK_FILE_NAME = 'LOCK';

const TAKEOVER_ATTEMPTS_MAX = 4;

/** Lock files held by this process, so a second open here fails even though the pid is alive. */
const held_lock_paths = new Set<string>();

export interface DirLock {
  readonly lock_path: string;
  release(): Promise<void>;
}

export async function acquireDirLock(dir: string): Promise<DirLock> {
  const lock_path = path.join(dir, LOCK_FILE_NAME);
  if (held_lock_paths.has(lock_path)) {
    throw new StorageLockedError(
      `data directory ${dir} is already open in this ` +
        `process (pid ${process.pid}); lock file ${lock_path}`,
    );
  }
  // Claimed before the first await, so two opens racing in this process cannot both get past here.
  held_lock_paths.add(lock_path);
  try {
    await takeLock(dir, lock_path);
  } catch (error) {
    held_lock_paths.delete(lock_path);
    throw error;
  }
  return {
    lock_path,
    release: async () => {
      held_lock_paths.delete(lock_path);
      await fs.promises.rm(lock_path, { force: true });
    },
  };
}

async function takeLock(dir: string, lock_path: string): Promise<void> {
  for (let attempt = 0; attempt < TAKEOVER_ATTEMPTS_MAX; attempt += 1) {
    if (await tryCreateLock(lock_path)) return;
    const content = await readIfExists(lock_path);
    if (content === null) continue;
    const pid = parsePid(content);
    if (pid === null) {
      throw new StorageLockedError(
        `data directory ${dir} has a lock file ${lock_path} with unexpected content ` +
          `${JSON.stringify(content.slice(0, 40))}; remove it if no process uses the directory`,
      );
    }
    if (pid !== process.pid && isProcessAlive(pid)) {
      throw new StorageLockedError(
        `data directory ${dir} is in use by process ${pid} (lock file ${lock_path})`,
      );
    }
    await removeStaleLock(lock_path, content);
  }
  throw new StorageLockedError(
    `data directory ${dir}: could not take the lock ` +
      `${lock_path}; other processes keep racing for it`,
  );
}

/** Creates the lock with our pid; false if a lock file already exists. */
async function tryCreateLock(lock_path: string): Promise<boolean> {
  const temp_path = `${lock_path}.${process.pid}.${randomBytes(6).toString('hex')}`;
  try {
    await fs.promises.writeFile(temp_path, `${process.pid}\n`, { flag: 'wx' });
    await fs.promises.link(temp_path, lock_path);
    return true;
  } catch (error) {
    if (errnoCode(error) === 'EEXIST') return false;
    throw new StorageIoError(`cannot create lock file ${lock_path}: ${describeError(error)}`);
  } finally {
    await fs.promises.rm(temp_path, { force: true }).catch(() => undefined);
  }
}

/**
 * Moves the stale lock aside under a unique name, then checks that what was
 * moved is the stale lock we judged: if another process took the lock over
 * in between, we moved its fresh lock, so we put it back and give up.
 */
async function removeStaleLock(lock_path: string, stale_content: string): Promise<void> {
  const aside_path = `${lock_path}.stale.${process.pid}.${randomBytes(6).toString('hex')}`;
  try {
    await fs.promises.rename(lock_path, aside_path);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return;
    throw new StorageIoError(`cannot remove stale lock file ${lock_path}: ${describeError(error)}`);
  }
  const moved = await readIfExists(aside_path);
  if (moved !== stale_content) {
    await fs.promises.link(aside_path, lock_path).catch(() => undefined);
    await fs.promises.rm(aside_path, { force: true });
    throw new StorageLockedError(
      `lock file ${lock_path} was taken over by another ` +
        `process while we were removing a stale lock`,
    );
  }
  await fs.promises.rm(aside_path, { force: true });
}

async function readIfExists(file_path: string): Promise<string | null> {
  try {
    return await fs.promises.readFile(file_path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return null;
    throw new StorageIoError(`cannot read lock file ${file_path}: ${describeError(error)}`);
  }
}

function parsePid(content: string): number | null {
  const text = content.trim();
  if (!/^[1-9][0-9]{0,9}$/.test(text)) return null;
  return Number(text);
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return errnoCode(error) === 'EPERM';
  }
}

function errnoCode(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
}
