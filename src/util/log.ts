/**
 * One line per significant event, to stderr, level-filtered. Quiet (warn) by
 * default; the config's `log_level` switches it.
 */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

const LEVEL_RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  enabled(level: LogLevel): boolean;
}

export function createLogger(
  prefix: string,
  level: LogLevel,
  write: (line: string) => void = (line) => process.stderr.write(line),
): Logger {
  const rank = LEVEL_RANK[level];
  const emit = (at: LogLevel, message: string): void => {
    if (LEVEL_RANK[at] > rank) return;
    write(`${new Date().toISOString()} ${at.toUpperCase()} ${prefix} ${message}\n`);
  };
  return {
    error: (m) => emit('error', m),
    warn: (m) => emit('warn', m),
    info: (m) => emit('info', m),
    debug: (m) => emit('debug', m),
    enabled: (at) => LEVEL_RANK[at] <= rank,
  };
}

export const SILENT_LOGGER: Logger = {
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  enabled: () => false,
};
