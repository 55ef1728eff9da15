/**
 * One line per significant event, to stderr, level-filtered. The default
 * level (`info`) shows what an operator needs: start and configuration, role
 * changes, peer up/down, recovery, shutdown; per-request and per-dial detail
 * is `debug`. `log_format json` writes one JSON object per line.
 *
 * A line identical to one written less than `repeat_window_ms` ago is held
 * back and counted; the next time that line is written the count rides along
 * ("(repeated N times)"), so a peer that keeps failing the same way costs one
 * line per window, not one per attempt.
 */
import { LIMITS } from './limits';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type LogFormat = 'text' | 'json';

const LEVEL_RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export const DEFAULT_LOG_LEVEL: LogLevel = 'info';
/** Identical lines closer together than this are counted instead of written. */
export const DEFAULT_REPEAT_WINDOW_MS = 10_000;

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  enabled(level: LogLevel): boolean;
}

export interface LoggerOptions {
  format?: LogFormat;
  repeat_window_ms?: number;
  now_ms?: () => number;
}

interface Repeat {
  last_written_ms: number;
  suppressed: number;
}

export function createLogger(
  prefix: string,
  level: LogLevel,
  write: (line: string) => void = (line) => process.stderr.write(line),
  options: LoggerOptions = {},
): Logger {
  const rank = LEVEL_RANK[level];
  const format = options.format ?? 'text';
  const window_ms = options.repeat_window_ms ?? DEFAULT_REPEAT_WINDOW_MS;
  const now_ms = options.now_ms ?? Date.now;
  const repeats = new Map<string, Repeat>();
  const emit = (at: LogLevel, message: string): void => {
    if (LEVEL_RANK[at] > rank) return;
    const now = now_ms();
    const key = `${at} ${message}`;
    const repeat = repeats.get(key);
    if (repeat !== undefined && now - repeat.last_written_ms < window_ms) {
      repeat.suppressed++;
      return;
    }
    const suppressed = repeat?.suppressed ?? 0;
    remember(repeats, key, now);
    const text = suppressed > 0 ? `${message} (repeated ${suppressed} times)` : message;
    write(formatLine(format, new Date(now).toISOString(), at, prefix, text));
  };
  return {
    error: (m) => emit('error', m),
    warn: (m) => emit('warn', m),
    info: (m) => emit('info', m),
    debug: (m) => emit('debug', m),
    enabled: (at) => LEVEL_RANK[at] <= rank,
  };
}

/** Bounded: past the limit the oldest remembered line is forgotten (it may then repeat once). */
function remember(repeats: Map<string, Repeat>, key: string, now: number): void {
  repeats.delete(key);
  repeats.set(key, { last_written_ms: now, suppressed: 0 });
  if (repeats.size > LIMITS.log_repeat_keys_max) {
    const oldest = repeats.keys().next();
    if (oldest.done !== true) repeats.delete(oldest.value);
  }
}

function formatLine(
  format: LogFormat,
  time: string,
  level: LogLevel,
  prefix: string,
  message: string,
): string {
  if (format === 'json') return `${JSON.stringify({ time, level, node: prefix, message })}\n`;
  return `${time} ${level.toUpperCase()} ${prefix} ${message}\n`;
}

export const SILENT_LOGGER: Logger = {
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  enabled: () => false,
};
