// Reading and writing raw fds. The payload paths never touch process.stdin/stdout: Node would
// set O_NONBLOCK on them, and that flag lives in the open file description that the shell
// pipeline shares with the programs around us (see spec/processing.md).
import { read, readFileSync, readSync, writeSync } from 'node:fs';

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
  // /proc/self/fdinfo is Linux's way to see an offset without moving it.
  const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1');
  const m = /^pos:\s*(\d+)/m.exec(info);
  if (!m) throw new Error(`cannot read the offset of fd ${fd}`);
  return Number(m[1]);
}

/** Chunks read from `fd` at its offset until EOF or `stop()`; async, so timers and signals run. */
export function fdChunks(fd: number, chunkSize = 1 << 20): { chunks: AsyncIterable<Buffer>; stop(): void } {
  let stopped = false;
  async function* gen(): AsyncGenerator<Buffer> {
    while (!stopped) {
      const buf = Buffer.allocUnsafe(chunkSize);
      let n: number;
      try {
        n = await new Promise<number>((resolve, reject) => read(fd, buf, 0, chunkSize, null, (e, r) => (e ? reject(e) : resolve(r))));
      } catch (e) {
        if (!isAgain(e)) throw e;
        await new Promise((r) => setTimeout(r, 2));
        continue;
      }
      if (n === 0) return;
      yield buf.subarray(0, n);
    }
  }
  return { chunks: gen(), stop: () => (stopped = true) };
}
