import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';

export interface KvcliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  elapsed_ms: number;
}

/**
 * Runs a kvcli script with `node`, writes `input` to its stdin (a pipe, so
 * not a TTY) and closes it; a run longer than `timeout_ms` is killed and
 * rejects. History is off so runs never touch the user's file.
 */
export function runKvcliProcess(
  script: string,
  args: readonly string[],
  input: string,
  timeout_ms: number,
): Promise<KvcliRun> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [script, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, KVCLI_HISTFILE: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const killer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `kvcli ${args.join(' ')} did not exit within ` +
            `${timeout_ms} ms; stdout: ${stdout}; stderr: ${stderr}`,
        ),
      );
    }, timeout_ms);
    child.on('error', (error) => {
      clearTimeout(killer);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr, elapsed_ms: performance.now() - started });
    });
    child.stdin.on('error', () => undefined); // kvcli may exit before reading everything (quit)
    child.stdin.end(input);
  });
}
