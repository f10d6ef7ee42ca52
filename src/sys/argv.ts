// The command line as bytes. Node decodes argv as UTF-8 and turns an invalid byte into
// U+FFFD; /proc/self/cmdline still has what the caller passed.
import { readFileSync } from 'node:fs';

export function splitNul(b: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = b.indexOf(0); i >= 0; i = b.indexOf(0, start)) {
    parts.push(b.subarray(start, i));
    start = i + 1;
  }
  if (start < b.length) parts.push(b.subarray(start));
  return parts;
}

/** Our own arguments (after node and the script), as bytes; undefined if /proc says otherwise. */
export function rawArgs(args: string[]): Buffer[] | undefined {
  let raw: Buffer[];
  try {
    raw = splitNul(readFileSync('/proc/self/cmdline')).slice(-args.length || Infinity);
  } catch {
    return undefined;
  }
  if (args.length === 0) return [];
  const same = raw.length === args.length && raw.every((r, i) => r.toString('utf8') === args[i]);
  return same ? raw : undefined;
}

export { isUtf8 } from 'node:buffer';

/**
 * Whether any of `args` may not be the bytes it was given as: only one holding U+FFFD. Bytes
 * that were valid UTF-8 come back exactly from encoding what Node decoded, so /proc need be
 * read only then.
 */
export function mayBeAltered(args: string[]): boolean {
  return args.some((a) => a.includes('\uFFFD'));
}

/** The raw bytes of `tail`, which must be the last arguments of our command line (params after `--`). */
export function rawTail(args: string[], tail: string[]): Buffer[] {
  const raw = mayBeAltered(tail) ? rawArgs(args) : undefined;
  if (!raw) return tail.map((t) => Buffer.from(t));
  return raw.slice(raw.length - tail.length);
}
