// Whether a file named by the user can be used as they mean it (read, run), and whether a
// directory can be written, asked of access(2) before the work that needs it: nothing is opened
// or read, so a pipe given as the file (`<(pass show fspool)`) is still whole when it is read.
import { accessSync, constants, statSync } from 'node:fs';
import { errnoWords } from '../errors.js';

/**
 * Why `path` cannot be used as a file for `mode` (fs.constants.R_OK, X_OK): access(2)'s errno in
 * words, with its code, or a directory; undefined when it can be.
 */
export function accessProblem(path: string, mode: number): { code: string | undefined; why: string } | undefined {
  try {
    accessSync(path, mode);
    return statSync(path).isDirectory() ? { code: 'EISDIR', why: 'is a directory' } : undefined;
  } catch (e) {
    return { code: (e as NodeJS.ErrnoException).code, why: errnoWords(e) };
  }
}

/** Whether access(2) lets this process use `path` for `mode` (fs.constants.R_OK, W_OK...). */
export function mayAccess(path: string, mode: number): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}

/** This process, as a permission error names it. */
export function who(): string {
  return `uid ${process.geteuid?.() ?? '?'}`;
}

/** `owned by uid U, mode 0MMM` of a file or directory, for a permission error. */
export function ownerAndMode(dir: string): string {
  try {
    const s = statSync(dir);
    return `owned by uid ${s.uid}, mode ${(s.mode & 0o7777).toString(8).padStart(4, '0')}`;
  } catch {
    return 'not readable';
  }
}

export const READ_ONLY = 'is on a read-only file system';

/** Why this process cannot write into `dir`, naming its owner and mode; undefined if it can. */
export function writable(dir: string): string | undefined {
  try {
    accessSync(dir, constants.W_OK);
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EROFS') return `${dir} ${READ_ONLY}`;
    return `${dir} (${ownerAndMode(dir)}) is not writable by ${who()}`;
  }
}
