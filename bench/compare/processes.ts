/**
 * Every process and temporary directory the benchmark creates, so that all of them are stopped
 * and removed at the end, on error and on Ctrl-C.
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

export class ProcessGroup {
  private readonly children = new Set<ChildProcess>();
  private readonly dirs: string[] = [];

  /** Tracks `child` until it exits; keeps the tail of its stderr in `tail()`. */
  add(child: ChildProcess, name: string): { tail: () => string } {
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-8000);
    });
    return { tail: () => `--- ${name} (pid ${child.pid ?? '?'})\n${stderr}` };
  }

  addDir(dir: string): void {
    this.dirs.push(dir);
  }

  /** Sends `signal` to one tracked child and waits for it to exit. */
  async stop(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
  }

  /** Kills every child still running and waits for them. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.children].map((child) => this.stop(child, 'SIGKILL')));
    this.removeDirs();
  }

  /** For signal handlers: kills everything without waiting, removes the directories. */
  killAllNow(): void {
    for (const child of this.children) child.kill('SIGKILL');
    this.removeDirs();
  }

  private removeDirs(): void {
    for (const dir of this.dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}
