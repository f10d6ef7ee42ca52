// Who holds a flock(2) lock, without touching the lock: /proc/locks lists every lock with the
// holder's pid and the file's device and inode. Taking the lock, even shared and for a moment,
// could make a processor starting at that instant fail with "locked", so readers only look.
import { readFileSync, statSync } from 'node:fs';

// Linux's dev_t encoding (glibc's gnu_dev_major / gnu_dev_minor).
const major = (dev: bigint) => ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
const minor = (dev: bigint) => (dev & 0xffn) | ((dev >> 12n) & ~0xffn);

export interface LockHolder {
  /** Whether /proc/locks could be read at all. */
  known: boolean;
  pid?: number;
}

/** The pid holding a FLOCK lock on `path` (not a waiter), as /proc/locks tells. */
export function lockHolder(path: string): LockHolder {
  let text: string;
  let dev: bigint;
  let ino: bigint;
  try {
    const st = statSync(path, { bigint: true });
    dev = st.dev;
    ino = st.ino;
    text = readFileSync('/proc/locks', 'latin1');
  } catch {
    return { known: false };
  }
  // "1: FLOCK  ADVISORY  WRITE 13498 fe:00:2164706 0 EOF"; waiters have "->" after the number.
  const re = /^\d+:\s+FLOCK\s+\S+\s+\S+\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/;
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (!m) continue;
    if (BigInt(m[4]!) === ino && BigInt(`0x${m[2]}`) === major(dev) && BigInt(`0x${m[3]}`) === minor(dev)) {
      return { known: true, pid: Number(m[1]) };
    }
  }
  return { known: true };
}
