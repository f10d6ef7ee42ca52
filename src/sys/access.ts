// Whether a file named by the user can be used as they mean it (read, run), asked of access(2)
// before the work that needs it: nothing is opened or read, so a pipe given as the file
// (`<(pass show fspool)`) is still whole when it is read.
import { accessSync, statSync } from 'node:fs';
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
