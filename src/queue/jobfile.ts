// Job files as files: opening them safely, their identity, and their saved output.
import { closeSync, constants, fstatSync, lstatSync, openSync, type Stats, unlinkSync } from 'node:fs';

/**
 * What a job file is, as the kernel knows it: a file renamed over the name, or rewritten in
 * place, has another identity. Compared between the scan and the run, and before a file is
 * removed, so that a processor never runs or deletes a packet it did not read.
 */
export interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

export const identityOf = (s: Stats): FileIdentity => ({ dev: s.dev, ino: s.ino, size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs });

export const sameIdentity = (a: FileIdentity, b: FileIdentity) =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;

/**
 * True if `path` still names the file of `identity` (same device and inode): a packet renamed
 * over it since it was read is another packet, and must not be removed or moved in its place.
 */
export function stillNames(path: string, identity: FileIdentity): boolean {
  try {
    const s = lstatSync(path);
    return s.dev === identity.dev && s.ino === identity.ino;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** A job name that is not a regular file: a FIFO, a symlink, a directory... */
export class NotAJobFile extends Error {
  override name = 'NotAJobFile';
}

function kindOf(s: Stats): string {
  if (s.isFIFO()) return 'a FIFO';
  if (s.isSymbolicLink()) return 'a symbolic link';
  if (s.isDirectory()) return 'a directory';
  if (s.isSocket()) return 'a socket';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

const notRegular = (what: string) => new NotAJobFile(`${what}; job files must be regular files: remove it`);

/**
 * Open a job file for reading, never blocking and never following a symlink: anyone who can
 * drop a file into jobs/ chooses its type, and a synchronous open of a FIFO would hang the
 * processor (lock held, deaf to signals), while a symlink could point the processor (often
 * root) at a device whose mere opening has effects. Only a regular file is accepted; the fd is
 * left non-blocking, which changes nothing for reads of a regular file (`blocking()` clears it
 * before an fd is handed to a receiver). Throws NotAJobFile, or the open's own error.
 */
export function openJobFile(path: string): { fd: number; stat: Stats } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW | constants.O_NOCTTY);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw notRegular('a symbolic link');
    throw e;
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw notRegular(kindOf(stat));
    return { fd, stat };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/**
 * Create `path` (a job's saved output, jobs/NAME.out) afresh for writing, whatever was there:
 * jobs/ is writable by whoever feeds the queue, so a symlink pre-placed under that name must
 * not make a root processor write through it, and a FIFO must not hang it. The old entry is
 * removed, then the file is created exclusively, without following symlinks (read-write: the
 * journal keeps its tail).
 */
export function createFresh(path: string, mode = 0o644): number {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
}

/** lstat of a job name: undefined if it is gone; NotAJobFile if it is not a regular file. */
export function statJobFile(path: string): Stats | undefined {
  let s: Stats;
  try {
    s = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  if (!s.isFile()) throw notRegular(kindOf(s));
  return s;
}

