// Loads native/fspool_sys.c (built by node-gyp at install): flock(2), pipe2(2), the terminal's width,
// and CFB's XOR.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface Sys {
  flock(fd: number, op: number): boolean;
  pipe(): [number, number];
  clearNonblock(fd: number): void;
  reap(pid: number): boolean;
  /** The columns of the terminal on fd (ioctl TIOCGWINSZ), or undefined if it is none. */
  winsize(fd: number): number | undefined;
  /** See native/fspool_sys.c: turns ks = ECB(ct) into CFB plaintext in place; reg carries over. */
  cfbXor(ks: Buffer, ct: Buffer, reg: Buffer): void;
  LOCK_EX: number;
  LOCK_NB: number;
  LOCK_UN: number;
}

const found = new Map<string, string>();

/**
 * `rel` in the package root: the nearest directory above this module that has it. Looked up
 * once per process (a processor starts fspool-exec for every job).
 */
export function packageFile(rel: string): string {
  const known = found.get(rel);
  if (known !== undefined) return known;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const p = join(dir, rel);
    if (existsSync(p)) {
      found.set(rel, p);
      return p;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`fspool is not built: ${rel} not found (run npm install)`);
    dir = up;
  }
}

let sys: Sys | undefined;
export function native(): Sys {
  sys ??= createRequire(import.meta.url)(packageFile('build/Release/fspool_sys.node')) as Sys;
  return sys;
}
