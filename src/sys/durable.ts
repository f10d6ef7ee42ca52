// Durable replacement of a file: temp name in the same directory, fsync, rename, fsync the
// directory. Only after the directory fsync may a caller report success: before it, a crash
// can bring back the old name or lose the new one.
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Write `tmp` with `fill(fd)`, fsync it, rename it to `dest`, fsync the directory.
 * On any failure the temp file is removed and `dest` is untouched.
 */
export function replaceDurably(dest: string, tmp: string, fill: (fd: number) => void): void {
  let fd: number | undefined = openSync(tmp, 'w', 0o644);
  try {
    fill(fd);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, dest);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* never created or already renamed */
    }
    throw e;
  }
  fsyncDir(dirname(dest));
}

export function writeFileDurably(dest: string, tmp: string, data: string | Uint8Array): void {
  replaceDurably(dest, tmp, (fd) => {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
  });
}
