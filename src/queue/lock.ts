// The processing lock: flock(2) on `<seqfile>.lock`, exactly as fspl takes it, so that fspool
// and fspl exclude each other. Why flock and how: spec/locking.md.
import { closeSync, constants, existsSync, fstatSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { errnoWords, FspoolError } from '../errors.js';
import { ownerAndMode, who } from '../sys/access.js';
import { fileKind } from '../sys/fd.js';
import { native } from '../sys/native.js';

/** What stands at `path` (followed, as the lock's open follows it). */
function kindAt(path: string): string {
  try {
    return fileKind(statSync(path).mode);
  } catch {
    return 'gone';
  }
}

export class FileLock {
  private constructor(
    readonly path: string,
    private fd: number | undefined,
  ) {}

  /**
   * Take an exclusive lock on `path`. Fails at once if another process holds it (fspl's
   * behaviour), or keeps trying for up to `waitSeconds`.
   */
  static async acquire(path: string, opts: { create: boolean; waitSeconds?: number; what: string; giveUp?: () => boolean }): Promise<FileLock> {
    let fd: number;
    try {
      // Never a wait in open(): a FIFO put there (with no reader: ENXIO, else not a file) would
      // block the event loop, and a command that cannot be stopped, for ever.
      const { O_APPEND, O_CREAT, O_NOCTTY, O_NONBLOCK, O_RDONLY, O_WRONLY } = constants;
      fd = openSync(path, (opts.create ? O_WRONLY | O_APPEND | O_CREAT : O_RDONLY) | O_NONBLOCK | O_NOCTTY, 0o666);
      if (!fstatSync(fd).isFile()) {
        closeSync(fd);
        throw Object.assign(new Error('not a regular file'), { code: 'EFTYPE' });
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EFTYPE' || code === 'ENXIO' || code === 'EISDIR') {
        throw new FspoolError(`${opts.what}: lock file ${path} is ${kindAt(path)}, not a regular file; remove it${opts.create ? '' : `, then create it (touch ${path})`}`);
      }
      // Creating it can only miss its directory.
      if (opts.create && (code === 'ENOENT' || code === 'ENOTDIR')) {
        const dir = dirname(path);
        if (code === 'ENOTDIR') throw new FspoolError(`${opts.what}: ${dir} is not a directory`);
        throw new FspoolError(`${opts.what}: directory ${dir} does not exist; create it first (mkdir -p ${dir})`);
      }
      if (code === 'ENOENT') throw new FspoolError(`${opts.what}: lock file ${path} does not exist; create it (touch ${path}), as queue-init does`);
      if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
        // The lock file itself, or (to be made) its directory.
        const there = existsSync(path) ? path : dirname(path);
        const fix = code === 'EROFS' ? 'it is on a read-only file system' : `run as its owner, or let ${who()} ${there === path ? 'open' : 'write'} it`;
        throw new FspoolError(`${opts.what}: cannot ${there === path ? 'open' : 'create'} lock file ${path}: ${errnoWords(e)} (${there}: ${ownerAndMode(there)}); ${fix}`);
      }
      throw e;
    }
    const sys = native();
    const deadline = Date.now() + (opts.waitSeconds ?? 0) * 1000;
    let delay = 10;
    try {
      while (!sys.flock(fd, sys.LOCK_EX | sys.LOCK_NB)) {
        if (Date.now() >= deadline || opts.giveUp?.()) {
          const waited = opts.waitSeconds ? ` after waiting ${opts.waitSeconds}s` : '';
          throw new FspoolError(`${opts.what} is locked by another process (${path})${waited}; use --wait-lock SECONDS to wait`);
        }
        await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(1, deadline - Date.now()))));
        delay = Math.min(delay * 2, 200);
      }
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return new FileLock(path, fd);
  }

  /** Closing the fd drops the flock; the kernel does the same if we die. */
  release(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
