// One line per event on stderr, in fspl's level names; written straight to fd 2 so that
// nothing is buffered when we exit and Node never makes fd 2 non-blocking.
import { writeAll } from './sys/fd.js';

export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
export type Level = (typeof LEVELS)[number];

let threshold = LEVELS.indexOf('info');

export function setLogLevel(level: Level): void {
  threshold = LEVELS.indexOf(level);
}

export function enabled(level: Level): boolean {
  return LEVELS.indexOf(level) >= threshold;
}

/**
 * Control characters (C0, DEL, C1) as `\xNN`: file names come from whoever feeds a queue, and
 * an escape sequence or a newline in one must neither drive the terminal nor forge a line.
 */
export function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function emit(level: Level, prefix: string, msg: string): void {
  if (!enabled(level)) return;
  const line = `${level.toUpperCase().padStart(5)} fspool: ${prefix}${printable(msg)}\n`;
  try {
    writeAll(2, Buffer.from(line));
  } catch {
    /* stderr gone: nowhere left to report */
  }
}

/** Where a part of fspool reports; the threshold is the process's (-l), the prefix its own. */
export interface Logger {
  trace(m: string): void;
  debug(m: string): void;
  info(m: string): void;
  warn(m: string): void;
  error(m: string): void;
}

function logger(prefix: string): Logger {
  return {
    trace: (m) => emit('trace', prefix, m),
    debug: (m) => emit('debug', prefix, m),
    info: (m) => emit('info', prefix, m),
    warn: (m) => emit('warn', prefix, m),
    error: (m) => emit('error', prefix, m),
  };
}

export const log: Logger = logger('');

/** A logger whose lines name what they are about (`[queue] ...`): one of several running side by side. */
export function labelled(label: string): Logger {
  return logger(`[${printable(label)}] `);
}
