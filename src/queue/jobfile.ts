// Job files as files: opening them safely, their identity, the directory that holds them, and
// their saved output.
import { closeSync, constants, fstatSync, lstatSync, type Stats } from 'node:fs';
import { describe } from '../errors.js';
import { isUtf8 } from '../sys/argv.js';
import { fileKind, openAsIs } from '../sys/fd.js';
import { native } from '../sys/native.js';

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

/** Whether two stats, or identities, are of the same file: the same device and inode. */
export const sameFile = (a: { dev: number; ino: number }, b: { dev: number; ino: number }) => a.dev === b.dev && a.ino === b.ino;

/**
 * True if `path` still names the file of `identity` (same device and inode): a packet renamed
 * over it since it was read is another packet, and must not be removed or moved in its place.
 */
export function stillNames(path: string, identity: FileIdentity): boolean {
  try {
    return sameFile(lstatSync(path), identity);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** A job name that is not a regular file: a FIFO, a symlink, a directory... */
export class NotAJobFile extends Error {
  override name = 'NotAJobFile';
}

const { S_IFMT, S_IFREG } = constants;

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
    fd = openAsIs(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw notRegular('a symbolic link');
    throw e;
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw notRegular(fileKind(stat.mode));
    return { fd, stat };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/**
 * See SCAN_FIELDS in native/fspool_sys.c: where the name starts, errno, mode, dev, ino, size,
 * mtime s, ns, ctime s, ns.
 */
const SCAN_FIELDS = 10;
/** ENOENT's number, 2 on every system fspool builds on (fs.constants has no errno values). */
const ENOENT = 2;

/**
 * A queue's jobs/ as one read found it: the job files' names, sorted by their bytes, and what
 * lstat said of each, by index. Names stay bytes in one buffer and numbers in one array until
 * asked for: a listing of 10,000 jobs keeps no object per job.
 */
export class JobDir {
  private decoded: string[] | undefined;

  constructor(
    readonly path: string,
    /** The names in their order, each followed by a NUL. */
    private readonly blob: Buffer,
    private readonly stats: Float64Array,
    /**
     * Job files whose names are not valid UTF-8, as shown (bytes outside printable ASCII, and
     * `\`, as \xNN): fspool cannot open them, and whatever seq they hold cannot run here.
     */
    readonly unnamed: string[] = [],
  ) {}

  get length(): number {
    return this.stats.length / SCAN_FIELDS;
  }

  /** The i-th name, decoded anew at each call (a listing keeps none). */
  name(i: number): string {
    const next = i + 1 < this.length ? this.stats[(i + 1) * SCAN_FIELDS]! : this.blob.length;
    return this.blob.toString('utf8', this.stats[i * SCAN_FIELDS], next - 1);
  }

  /** Every name, decoded once and kept (for the scans that keep objects per job anyway). */
  get names(): readonly string[] {
    if (!this.decoded) {
      // A NUL ends each name and cannot be part of a UTF-8 sequence: one decode for them all.
      this.decoded = this.blob.toString('utf8').split('\0');
      this.decoded.pop();
    }
    return this.decoded;
  }

  /** Removed between the directory's read and its lstat. */
  vanished(i: number): boolean {
    return this.stats[i * SCAN_FIELDS + 1] === ENOENT;
  }

  /** Why the i-th name cannot be a job: not a regular file (a FIFO, a symlink...), or its lstat failed. One line. */
  problem(i: number): string | undefined {
    const o = i * SCAN_FIELDS;
    const errno = this.stats[o + 1]!;
    // Rare (EACCES, ENAMETOOLONG...): described as lstat would have described it.
    if (errno !== 0) return errno === ENOENT ? undefined : describe(errnoError(errno, 'lstat', `${this.path}/${this.name(i)}`));
    const mode = this.stats[o + 2]!;
    return (mode & S_IFMT) === S_IFREG ? undefined : notRegular(fileKind(mode)).message;
  }

  /**
   * The i-th file's identity (a new object at each call); undefined unless it is a regular
   * file. Times are Node's millisecond doubles, computed as Node computes them from the same
   * seconds and nanoseconds, so they compare equal to those of fstatSync.
   */
  identity(i: number): FileIdentity | undefined {
    const f = this.stats;
    const o = i * SCAN_FIELDS;
    if (f[o + 1] !== 0 || (f[o + 2]! & S_IFMT) !== S_IFREG) return undefined;
    return { dev: f[o + 3]!, ino: f[o + 4]!, size: f[o + 5]!, mtimeMs: f[o + 6]! * 1e3 + f[o + 7]! / 1e6, ctimeMs: f[o + 8]! * 1e3 + f[o + 9]! / 1e6 };
  }

  /**
   * The i-th identity as the header cache stores it, in one string: `dev ino size mtimeMs
   * ctimeMs`, numbers as String prints them; '' unless it is a regular file. Made without the
   * identity object: a listing compares one for each job.
   */
  identityKey(i: number): string {
    const f = this.stats;
    const o = i * SCAN_FIELDS;
    if (f[o + 1] !== 0 || (f[o + 2]! & S_IFMT) !== S_IFREG) return '';
    return `${f[o + 3]} ${f[o + 4]} ${f[o + 5]} ${f[o + 6]! * 1e3 + f[o + 7]! / 1e6} ${f[o + 8]! * 1e3 + f[o + 9]! / 1e6}`;
  }
}

/** An error as Node's fs functions make it, so that describe() and `code` checks treat it alike. */
function errnoError(errno: number, syscall: string, path: string): NodeJS.ErrnoException {
  const code = (process.getBuiltinModule('node:util') as typeof import('node:util')).getSystemErrorName(-errno);
  return Object.assign(new Error(`${code}: ${syscall} '${path}'`), { errno: -errno, code, syscall, path });
}

/**
 * The job files of `path` (fspl's glob `fspl-*.fspl`), each with its lstat, sorted by their
 * bytes: one native call, one fstatat per name (no file is opened, so a FIFO cannot block).
 * Names that are not valid UTF-8 cannot be carried through Node's string paths: they are
 * left out of the names, and kept apart as shown (JobDir.unnamed), for the caller to report.
 */
export function readJobDir(path: string, noFollow = false): JobDir {
  const r = native().scanJobDir(path, noFollow);
  if (typeof r === 'number') throw errnoError(r, 'scandir', path);
  const [blob, stats] = r;
  if (isUtf8(blob)) return new JobDir(path, blob, stats);
  // Rare: the other names and their stats, copied without the bad ones.
  const names: Buffer[] = [];
  const kept: number[] = [];
  const unnamed: string[] = [];
  for (let i = 0; i < stats.length / SCAN_FIELDS; i++) {
    const start = stats[i * SCAN_FIELDS]!;
    const raw = blob.subarray(start, blob.indexOf(0, start));
    if (isUtf8(raw)) {
      names.push(raw, Buffer.alloc(1));
      kept.push(i);
    } else unnamed.push([...raw].map((b) => (b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join(''));
  }
  const keptStats = new Float64Array(kept.length * SCAN_FIELDS);
  let at = 0;
  kept.forEach((i, k) => {
    keptStats.set(stats.subarray(i * SCAN_FIELDS, (i + 1) * SCAN_FIELDS), k * SCAN_FIELDS);
    keptStats[k * SCAN_FIELDS] = at;
    at += names[2 * k]!.length + 1;
  });
  return new JobDir(path, Buffer.concat(names), keptStats, unnamed);
}
