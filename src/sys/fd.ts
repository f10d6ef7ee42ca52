// Reading and writing raw fds. The payload paths never touch process.stdin/stdout: Node would
// set O_NONBLOCK on them, and that flag lives in the open file description that the shell
// pipeline shares with the programs around us (see spec/processing.md).
import { closeSync, constants, fstatSync, lstatSync, openSync, read, readFileSync, readSync, writeSync } from 'node:fs';

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Block the thread briefly: an fd someone else made non-blocking has no data yet. */
function nap(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

const isAgain = (e: unknown) => (e as NodeJS.ErrnoException).code === 'EAGAIN';

/** read(2) at the fd's current offset; 0 means EOF. Waits out EAGAIN instead of failing. */
export function readSome(fd: number, buf: Uint8Array, len = buf.length): number {
  for (;;) {
    try {
      return readSync(fd, buf, 0, len, null);
    } catch (e) {
      if (!isAgain(e)) throw e;
      nap(2);
    }
  }
}

/** Read exactly `n` bytes unless EOF comes first; never reads past them. */
export function readUpTo(fd: number, n: number): Buffer {
  const buf = Buffer.allocUnsafe(n);
  let got = 0;
  while (got < n) {
    const r = readSome(fd, buf.subarray(got), n - got);
    if (r === 0) break;
    got += r;
  }
  return buf.subarray(0, got);
}

/** write(2) all of `data`, in as few calls as the kernel allows. */
export function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) {
    try {
      off += writeSync(fd, data, off, data.length - off);
    } catch (e) {
      if (!isAgain(e)) throw e;
      nap(2);
    }
  }
}

/** Copy everything from `from` (at its offset) to `to`; returns the byte count. */
export function copyFd(from: number, to: number, progress?: { add(n: number): void }): number {
  const buf = Buffer.allocUnsafe(1 << 20);
  let total = 0;
  for (;;) {
    const n = readSome(from, buf);
    if (n === 0) return total;
    writeAll(to, buf.subarray(0, n));
    total += n;
    progress?.add(n);
  }
}

/** The fd's current file offset, shared with any child that inherited it. */
export function fdOffset(fd: number): number {
  // /proc/self/fdinfo is Linux's way to see an offset without moving it, and without waiting:
  // lseek(fd, 0, SEEK_CUR) would take the file's position lock, which a receiver sharing the
  // offset holds for the whole of each read, so a receiver stuck reading (NFS, a failing disk)
  // would stop this thread with it.
  const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1');
  const m = /^pos:\s*(\d+)/m.exec(info);
  if (!m) throw new Error(`cannot read the offset of fd ${fd}`);
  return Number(m[1]);
}

/** The first read of a stream is small (headers are small, and most scans stop after one). */
const FIRST_CHUNK = 64 * 1024;

/**
 * Chunks read from `fd` at its offset until EOF or `stop()`; async (the reads run in libuv's
 * thread pool), so timers and signals run meanwhile.
 *
 * A regular file is read through a descriptor of the reader's own, reopened through
 * /proc/self/fd, by position. Callers close `fd` as soon as they stop reading, possibly while a
 * read is still queued in the thread pool; that read must not land on whatever file is opened
 * next under the same fd number (it did: a scan of encoded packets read other files' bytes).
 * The reader closes its own descriptor only once no read is in flight. A pipe (stdin) is read
 * through `fd` itself, which fspool never closes.
 */
export function fdChunks(fd: number, chunkSize = 1 << 20): { chunks: AsyncIterable<Buffer>; stop(): void } {
  let own: number | undefined;
  let pos = 0;
  if (fstatSync(fd).isFile()) {
    own = openSync(`/proc/self/fd/${fd}`, 'r');
    pos = fdOffset(fd);
  }
  let stopped = false;
  let inFlight = false;
  const release = () => {
    if (own === undefined || inFlight) return;
    closeSync(own);
    own = undefined;
  };
  async function* gen(): AsyncGenerator<Buffer> {
    try {
      for (let size = Math.min(FIRST_CHUNK, chunkSize); !stopped; size = chunkSize) {
        const buf = Buffer.allocUnsafe(size);
        let n: number;
        inFlight = true;
        try {
          const from = own ?? fd;
          const at = own === undefined ? null : pos;
          n = await new Promise<number>((resolve, reject) => read(from, buf, 0, size, at, (e, r) => (e ? reject(e) : resolve(r))));
        } catch (e) {
          if (!isAgain(e)) throw e;
          await new Promise((r) => setTimeout(r, 2));
          continue;
        } finally {
          inFlight = false;
        }
        if (stopped || n === 0) return;
        pos += n;
        yield buf.subarray(0, n);
      }
    } finally {
      release();
    }
  }
  return {
    chunks: gen(),
    stop: () => {
      stopped = true;
      release();
    },
  };
}

/**
 * `path` opened for reading as the thing it is, for a name someone else may have put there (a
 * queue's jobs/, an outbox, a shared folder): never through a symlink (ELOOP), never waiting on
 * a FIFO (non-blocking), never taking a terminal as ours (O_NOCTTY). The caller checks the type
 * it expects with fstat.
 */
export function openAsIs(path: string): number {
  return openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW | constants.O_NOCTTY);
}

/**
 * `path` opened as-is (openAsIs) if it is a regular file: a symlink or a FIFO throws (ELOOP, or
 * `not a regular file`) where a plain open would follow it, and a read of it would hang, or
 * never end while a writer feeds it.
 */
export function openRegular(path: string): number {
  const fd = openAsIs(path);
  try {
    if (!fstatSync(fd).isFile()) throw Object.assign(new Error(`${path} is not a regular file`), { code: 'EFTYPE' });
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

/** What kind of file a mode (st_mode) says: "a FIFO", "a directory"... */
export function fileKind(mode: number): string {
  const { S_IFMT, S_IFIFO, S_IFLNK, S_IFDIR, S_IFSOCK, S_IFCHR, S_IFBLK } = constants;
  switch (mode & S_IFMT) {
    case S_IFIFO:
      return 'a FIFO';
    case S_IFLNK:
      return 'a symbolic link';
    case S_IFDIR:
      return 'a directory';
    case S_IFSOCK:
      return 'a socket';
    case S_IFCHR:
      return 'a character device';
    case S_IFBLK:
      return 'a block device';
    default:
      return 'not a regular file';
  }
}

/** Whether `path` is a symlink (false if it is anything else, or nothing). */
export function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** The text of `path` if it is a regular file (openRegular). */
export function readRegularFile(path: string): string {
  const fd = openRegular(path);
  try {
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

const NO_WAIT_CHUNK = 64 * 1024;

/**
 * The whole content of `path`, which may be a pipe (`--passphrase-file <(pass show fspool)`):
 * opened without waiting for a writer, so that a FIFO no one writes to reads as empty rather
 * than blocking the thread for ever (a worker blocked in open() holds up even the process's
 * exit); a writer that is there is read to its end.
 */
export function readFileNoWait(path: string): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const chunks: Buffer[] = [];
    for (;;) {
      // Short only at the end of the file.
      const chunk = readUpTo(fd, NO_WAIT_CHUNK);
      chunks.push(chunk);
      if (chunk.length < NO_WAIT_CHUNK) return Buffer.concat(chunks);
    }
  } finally {
    closeSync(fd);
  }
}
