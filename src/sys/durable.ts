// Durable replacement of a file: temp name in the same directory, fsync, rename, fsync the
// directory. Only after the directory fsync may a caller report success: before it, a crash
// can bring back the old name or lose the new one.
import { closeSync, constants, fchownSync, fsync, fsyncSync, openSync, renameSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { copyFd, openRegular, writeAll } from './fd.js';

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * A new file at `path`, open for writing: whatever was there is removed first, and the file is
 * created exclusively, never opened through what a name already holds. Temp names are fixed
 * and may sit in directories that others write (a receipts folder a transport shares, jobs/
 * for a job's saved output): a symlink there would have a root processor truncate and write its
 * target, a FIFO would block the open. `readable`: open it read-write.
 */
export function createNew(path: string, opts: { readable?: boolean } = {}): number {
  const access = opts.readable ? constants.O_RDWR : constants.O_WRONLY;
  for (let tries = 1; ; tries++) {
    try {
      unlinkSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    try {
      return openSync(path, access | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
    } catch (e) {
      // Put back between the unlink and the open: taken away again, a few times.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || tries >= 3) throw e;
    }
  }
}

/** A file's owner and group, to give a file made as root to the user it is for. */
export interface FileOwner {
  uid: number;
  gid: number;
}

/**
 * `fd`'s file given to `owner`, where the file system can (vfat, or NFS with root squashed,
 * cannot: the file stays ours, as it was before owners were given files).
 */
function giveTo(fd: number, owner: FileOwner): void {
  try {
    fchownSync(fd, owner.uid, owner.gid);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e;
  }
}

/**
 * Create `path` anew (see createNew), given to `owner` if one is named, and `fill` it; returns
 * the open fd. On failure the file is removed.
 */
function createFilled(path: string, fill: (fd: number) => void, owner?: FileOwner): number {
  const fd = createNew(path);
  try {
    if (owner) giveTo(fd, owner);
    fill(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(path);
    throw e;
  }
  return fd;
}

/** Create `path` anew (given to `owner`, if named), `fill` it, fsync. On failure the file is removed. */
function fillSynced(path: string, fill: (fd: number) => void, owner?: FileOwner): void {
  const fd = createFilled(path, fill, owner);
  try {
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(path);
    throw e;
  }
  closeSync(fd);
}

const writer = (data: string | Uint8Array) => (fd: number) => writeAll(fd, typeof data === 'string' ? Buffer.from(data) : data);

/** Create `path` anew (given to `owner`, if named), write `data`, fsync. On failure the file is removed. */
export function writeSynced(path: string, data: string | Uint8Array, owner?: FileOwner): void {
  fillSynced(path, writer(data), owner);
}

/**
 * A copy of the regular file `src` made anew at `dest` (see createNew) and fsynced; a symlink
 * or a FIFO at `src` throws (openRegular) before `dest` is made. On failure `dest` is removed.
 */
export function copyToNew(src: string, dest: string): void {
  const from = openRegular(src);
  try {
    copyFdToNew(from, dest);
  } finally {
    closeSync(from);
  }
}

/** What is left to read of the fd `from`, into a file made anew at `dest` and fsynced (see copyToNew). */
export function copyFdToNew(from: number, dest: string): void {
  fillSynced(dest, (to) => copyFd(from, to));
}

/**
 * writeSynced(), with the fsync running in libuv's thread pool: the file is created and written
 * before this returns (it throws if it cannot be: no permission, no space), and the caller may
 * do other work (its own fsync, a job) while the disk catches up. The promise settles once the
 * data is on disk; on failure the file is removed.
 */
export function writeSyncedConcurrently(path: string, data: string | Uint8Array, owner?: FileOwner): Promise<void> {
  const fd = createFilled(path, writer(data), owner);
  return new Promise<void>((resolve, reject) => fsync(fd, (e) => (e ? reject(e) : resolve()))).then(
    () => closeSync(fd),
    (e: unknown) => {
      closeSync(fd);
      unlinkSync(path);
      throw e;
    },
  );
}

/** Rename `from` over `to` (same directory) and fsync the directory. */
export function renameDurably(from: string, to: string): void {
  renameSync(from, to);
  fsyncDir(dirname(to));
}

/** `data` into `dest` by way of `tmp`; on failure `dest` is untouched and `tmp` gone. */
export function writeFileDurably(dest: string, tmp: string, data: string | Uint8Array): void {
  writeSynced(tmp, data);
  try {
    renameSync(tmp, dest);
  } catch (e) {
    unlinkSync(tmp);
    throw e;
  }
  fsyncDir(dirname(dest));
}
