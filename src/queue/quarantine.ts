// Quarantine: QUEUE/fspool/quarantine/, where `--on-error quarantine` sets aside a job that
// kept failing, with NAME.json beside it telling why (so the reason survives the database).
// Moves are durable: the note is written under a temp name, fsynced and renamed; the packet is
// fsynced, hard-linked into quarantine/ (link never replaces an existing file), the folder
// fsynced, and only then removed from jobs/, and jobs/ fsynced. A crash leaves the packet in
// jobs/, in quarantine/, or in both (then the next run finishes the move): never in neither.
import { closeSync, existsSync, fstatSync, fsyncSync, linkSync, mkdirSync, readdirSync, renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, FspoolError } from '../errors.js';
import { copyFdToNew, fsyncDir, writeFileDurably } from '../sys/durable.js';
import { openRegular, readRegularFile } from '../sys/fd.js';
import { randomUUID } from '../sys/lazy.js';
import { asOwner, foreignOwner } from './owner.js';
import { type FileIdentity, sameFile } from './jobfile.js';
import { JOB_NAME, type Queue } from './queue.js';
import { STATE_DIR, stateDir } from './stateDb.js';

export const QUARANTINE = 'quarantine';

export function quarantineDir(queueDir: string): string {
  return join(stateDir(queueDir), QUARANTINE);
}

/** Job files in quarantine. */
export function quarantined(queueDir: string): string[] {
  try {
    return readdirSync(quarantineDir(queueDir)).filter((n) => JOB_NAME.test(n)).sort();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return [];
    if (code === 'EACCES') throw new FspoolError(`cannot read the quarantine of queue ${queueDir} (${describe(e)}); run as the queue's owner, or give read access to ${stateDir(queueDir)} and its quarantine/`);
    throw e;
  }
}

function ensureDir(path: string): void {
  if (existsSync(path)) return;
  try {
    mkdirSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  fsyncDir(join(path, '..'));
}

/**
 * The longest name a packet keeps in quarantine/: its note's temp file, `.NAME.json.tmp`, is 10
 * bytes longer, and a file system takes 255. A job's name may be as long as any (its writer
 * chooses it), and a move that can never succeed would stop the queue at every run.
 */
const KEPT_NAME_MAX = 255 - '..json.tmp'.length;

/** `name` cut to at most `max` bytes of UTF-8, never inside a character. */
function cutTo(name: string, max: number): string {
  const bytes = Buffer.from(name);
  if (bytes.length <= max) return name;
  let end = max;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString();
}

/**
 * A name in quarantine/ not taken by another packet: NAME, else NAME with ~2, ~3...; a NAME too
 * long to keep beside its note, with its ~N, is cut, and a cut one always given a ~N (its note
 * keeps the whole).
 */
function freeName(dir: string, name: string): string {
  if (Buffer.byteLength(name) <= KEPT_NAME_MAX && !existsSync(join(dir, name))) return name;
  const base = name.replace(/\.fspl$/, '');
  for (let i = 2; ; i++) {
    const suffix = `~${i}.fspl`;
    // Cut to fit with its ~N too (a name that fits may not once it has one).
    const n = `${cutTo(base, KEPT_NAME_MAX - suffix.length)}${suffix}`;
    if (!existsSync(join(dir, n))) return n;
  }
}

/**
 * Move the job file `name` into quarantine, with `note` as NAME.json beside it. Returns the
 * path it has there, relative to the queue (as the journal records it). The quarantine is the
 * queue owner's: a root processor works in it as the owner (owner.ts), so what it makes there is
 * the owner's, and a symlink the owner put there leads it nowhere the owner could not go.
 */
export function quarantineJob(queue: Queue, name: string, note: object, identity?: FileIdentity): string | undefined {
  const src = queue.jobPath(name);
  const owner = foreignOwner(queue.dir);
  // The packet is opened as we are: it is the job file, and its owner may be neither of us. It
  // must be the file that was judged: not one renamed over it since, nor one a jobs/ made a
  // symlink since leads to (root would copy it into the owner's quarantine).
  const from = openRegular(src);
  if (identity && !sameFile(fstatSync(from), identity)) {
    closeSync(from);
    return undefined;
  }
  let dest: string;
  try {
    fsyncSync(from);
    dest = asOwner(owner, () => {
      ensureDir(stateDir(queue.dir));
      const dir = quarantineDir(queue.dir);
      ensureDir(dir);
      const dest = freeName(dir, name);
      writeFileDurably(join(dir, `${dest}.json`), join(dir, `.${dest}.json.tmp`), `${JSON.stringify(note, null, 2)}\n`);
      try {
        linkSync(src, join(dir, dest));
      } catch (e) {
        // quarantine/ on another file system, or a packet the owner may not link (someone
        // else's, under fs.protected_hardlinks): a copy under a temp name, fsynced, renamed.
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EXDEV' && code !== 'EPERM') throw e;
        const tmp = join(dir, `.${dest}.tmp`);
        copyFdToNew(from, tmp);
        renameSync(tmp, join(dir, dest));
      }
      fsyncDir(dir);
      return dest;
    });
  } finally {
    closeSync(from);
  }
  // As the owner (see removeJobFiles): a jobs/ swapped since leads it nowhere of root's.
  asOwner(owner, () => unlinkSync(src));
  fsyncDir(queue.jobsDir);
  return `${STATE_DIR}/${QUARANTINE}/${dest}`;
}

/** A packet in quarantine: its file, and the note saying why it is there (when readable). */
export interface Quarantined {
  name: string;
  path: string;
  note: Record<string, unknown> | undefined;
}

export function quarantineEntries(queueDir: string): Quarantined[] {
  const dir = quarantineDir(queueDir);
  return quarantined(queueDir).map((name) => {
    let note: Record<string, unknown> | undefined;
    try {
      // As it is, and as the owner (quarantineJob): a FIFO put there must not hang a listing.
      note = JSON.parse(asOwner(foreignOwner(queueDir), () => readRegularFile(join(dir, `${name}.json`)))) as Record<string, unknown>;
    } catch {
      note = undefined;
    }
    return { name, path: join(dir, name), note };
  });
}

/**
 * Put a quarantined packet back into jobs/ (under its quarantine name, which is a job name),
 * durably: linked into jobs/, jobs/ fsynced, then removed from quarantine/ with its note. A
 * crash leaves it in both places (the next release finishes) or in jobs/ only. Returns its
 * name in jobs/.
 */
export function releaseJob(queue: Queue, name: string): string {
  const src = join(quarantineDir(queue.dir), name);
  const dest = queue.jobPath(name);
  if (existsSync(dest)) throw new Error(`${dest} exists already`);
  // As the owner, whose quarantine it is (quarantineJob): what the name leads to is theirs.
  asOwner(foreignOwner(queue.dir), () => {
    const from = openRegular(src);
    try {
      fsyncSync(from);
      try {
        linkSync(src, dest);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EXDEV' && code !== 'EPERM') throw e;
        // jobs/ is anyone's who feeds the queue: the temp file is made anew, never written through.
        // Short, whatever the name's length (a kept name may be 245 bytes).
        const tmp = queue.jobPath(`.release-${randomUUID()}.tmp`);
        copyFdToNew(from, tmp);
        renameSync(tmp, dest);
      }
    } finally {
      closeSync(from);
    }
    fsyncDir(queue.jobsDir);
  });
  forgetQuarantined(queue, name);
  return name;
}

/** Remove a packet and its note from quarantine, durably (as the queue's owner: quarantineJob). */
export function forgetQuarantined(queue: Queue, name: string): void {
  asOwner(foreignOwner(queue.dir), () => {
    const dir = quarantineDir(queue.dir);
    for (const f of [name, `${name}.json`]) {
      try {
        unlinkSync(join(dir, f));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    fsyncDir(dir);
  });
}
