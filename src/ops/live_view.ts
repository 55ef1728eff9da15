/**
 * The terminal loop of the live cluster view (`kvcli cluster`, `npm start`):
 * poll, redraw the whole screen, once a second; keys come from a raw-mode
 * stdin. `q` or Ctrl-C ends it. Not a terminal: print one table and return.
 */
import type { Readable, Writable } from 'node:stream';
import {
  ClusterWatcher,
  LINK_LEGEND,
  leaderSummary,
  type NodeView,
  renderClusterTable,
} from './cluster_view';

export const REFRESH_MS = 1000;
/** While no node leads (start-up, failover) the view refreshes faster to show the election. */
const LEADERLESS_REFRESH_MS = 250;
const CLEAR_SCREEN = '\x1b[H\x1b[2J';
const CTRL_C = '\u0003';

export interface LiveViewOptions {
  seeds: readonly string[];
  stdin: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout: Writable & { isTTY?: boolean };
  title: string;
  /** Lines under the table (key help, recent events). */
  footer?: () => string[];
  /** Called for every key but q / Ctrl-C; returns once the action is under way. */
  on_key?: (key: string) => void;
  /** Sees every polled frame's rows (e.g. to know the leader for a key action). */
  on_frame?: (views: NodeView[]) => void;
  /** Print one table and return even on a terminal. */
  once?: boolean;
}

/** Renders one frame: title, table, summary, legend, footer. */
async function frame(
  watcher: ClusterWatcher,
  options: LiveViewOptions,
  interactive: boolean,
): Promise<{ text: string; leaderless: boolean }> {
  const views = await watcher.poll();
  options.on_frame?.(views);
  const clock = new Date().toISOString().slice(11, 19);
  const lines = [
    `${options.title}${interactive ? ' (q quits)' : ''}   ${clock}`,
    '',
    ...renderClusterTable(views),
    '',
    leaderSummary(views),
    LINK_LEGEND,
    ...(options.footer?.() ?? []),
  ];
  const leaderless = !views.some((view) => view.reachable && view.role === 'leader');
  return { text: `${lines.join('\n')}\n`, leaderless };
}

/** Resolves when the user quits (or after one frame when not on a terminal). */
export async function runLiveView(options: LiveViewOptions): Promise<void> {
  const watcher = new ClusterWatcher(options.seeds);
  const interactive =
    options.once !== true && options.stdout.isTTY === true && options.stdin.isTTY === true;
  try {
    if (!interactive) {
      // Two polls: the first finds every node from the seed, the second asks them all.
      await watcher.poll();
      options.stdout.write((await frame(watcher, options, false)).text);
      return;
    }
    await new Promise<void>((resolve) => {
      let stopped = false;
      let timer: NodeJS.Timeout | null = null;
      const stop = (): void => {
        if (stopped) return;
        stopped = true;
        if (timer !== null) clearTimeout(timer);
        options.stdin.off('data', onData);
        options.stdin.setRawMode?.(false);
        options.stdin.pause();
        resolve();
      };
      const onData = (chunk: Buffer | string): void => {
        for (const key of chunk.toString()) {
          if (key === 'q' || key === CTRL_C) {
            stop();
            return;
          }
          options.on_key?.(key);
        }
      };
      const draw = async (): Promise<void> => {
        const { text, leaderless } = await frame(watcher, options, true);
        if (stopped) return;
        options.stdout.write(CLEAR_SCREEN + text);
        timer = setTimeout(() => void draw(), leaderless ? LEADERLESS_REFRESH_MS : REFRESH_MS);
      };
      options.stdin.setRawMode?.(true);
      options.stdin.resume();
      options.stdin.on('data', onData);
      void draw();
    });
  } finally {
    await watcher.close();
  }
}
