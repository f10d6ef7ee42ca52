// Errors that end a command: one line for the user, and the exit status (spec/exit-codes.md).

/** A failure the user must hear about; exit status 1 as in fspl. */
export class FspoolError extends Error {
  override name = 'FspoolError';
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

/** Bad command line: exit status 2 as in fspl. */
export class UsageError extends FspoolError {
  override name = 'UsageError';
  constructor(message: string) {
    super(message, 2);
  }
}

/** One line naming what failed, for errors of any origin (Node's carry an errno code). */
export function describe(e: unknown): string {
  if (e instanceof Error) {
    const err = e as NodeJS.ErrnoException;
    if (err.code && err.syscall) {
      const what = err.path ? `${err.syscall} ${err.path}` : err.syscall;
      return `${what}: ${errnoText(err.code)}`;
    }
    return e.message.split('\n')[0]!;
  }
  return String(e);
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EEXIST: 'file exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  EPIPE: 'broken pipe',
  EIO: 'input/output error',
  EBADF: 'bad file descriptor',
};
const errnoText = (code: string) => (ERRNO_TEXT[code] ? `${ERRNO_TEXT[code]} (${code})` : code);

/**
 * Why `e` happened, for a message that names the file itself: its errno in words (`no such file
 * or directory (ENOENT)`), or describe(e) for an error without one.
 */
export function errnoWords(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code ? errnoText(code) : describe(e);
}

/** Up to `n` of `items`, and how many more: a message names a few files, not every one a queue holds. */
export function someOf(items: string[], n = 3): string {
  return items.length <= n ? items.join(', ') : `${items.slice(0, n).join(', ')} and ${items.length - n} more`;
}
