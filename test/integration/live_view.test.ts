/**
 * `npm start`'s live view in a real pseudo-terminal (tmux): it finds the
 * leader, `k` kills it from the keyboard, the view shows another leader
 * while the old one is down, and `q` stops every node.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, pollUntil } from './cluster_harness';
import { freePortPairs } from '../support/ports';

const TEST_TIMEOUT_MS = 90_000;
const LOCAL_CLUSTER_JS = join(REPO_ROOT, 'dist', 'src', 'cluster', 'local_cluster.js');
const HAS_TMUX = spawnSync('tmux', ['-V']).status === 0;

function tmux(...args: string[]): string {
  return execFileSync('tmux', args, { encoding: 'utf8' });
}

function screen(session: string): string {
  return tmux('capture-pane', '-p', '-t', session);
}

function leaderOf(text: string): number | null {
  const match = /^leader: node (\d+) /m.exec(text);
  return match === null ? null : Number(match[1]);
}

function sessionAlive(session: string): boolean {
  return spawnSync('tmux', ['has-session', '-t', session]).status === 0;
}

/** Node processes whose config lives under `dir`: killed if the launcher could not stop them. */
function killStrays(dir: string): void {
  const listing = spawnSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).stdout ?? '';
  for (const line of listing.split('\n')) {
    if (!line.includes(dir)) continue;
    const pid = Number(line.trim().split(' ')[0]);
    if (Number.isInteger(pid) && pid !== process.pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

test('live view: the leader killed from the keyboard is replaced on screen', {
  timeout: TEST_TIMEOUT_MS,
  skip: HAS_TMUX ? false : 'tmux not installed',
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvraft-view-'));
  const ports = await freePortPairs(3);
  const session = `kvview${process.pid}`;
  const command = [
    process.execPath,
    LOCAL_CLUSTER_JS,
    '--port',
    String(ports[0]),
    '--data',
    dir,
  ].join(' ');
  tmux('new-session', '-d', '-s', session, '-x', '200', '-y', '50', command);
  try {
    const first = await pollUntil('a leader on screen', 20_000, () => leaderOf(screen(session)));
    assert.match(screen(session), /3\/3 nodes up/);
    tmux('send-keys', '-t', session, 'k');
    const second = await pollUntil('another leader on screen', 20_000, () => {
      const text = screen(session);
      const leader = leaderOf(text);
      return leader !== null && leader !== first && /2\/3 nodes up/.test(text) ? leader : null;
    });
    assert.notEqual(second, first);
    const row = new RegExp(`^${first} +127\\.0\\.0\\.1:${ports[first - 1]} +down`, 'm');
    assert.match(screen(session), row);
    tmux('send-keys', '-t', session, 'q');
    await pollUntil('the launcher to exit', 20_000, () => (sessionAlive(session) ? null : true));
  } catch (error) {
    if (error instanceof Error && sessionAlive(session)) error.message += `\n${screen(session)}`;
    throw error;
  } finally {
    if (sessionAlive(session)) tmux('kill-session', '-t', session);
    killStrays(dir);
    rmSync(dir, { recursive: true, force: true });
  }
});
