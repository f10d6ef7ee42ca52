// Quarantine: QUEUE/fspool/quarantine/, where `--on-error quarantine` sets aside a job that
// kept failing, with NAME.json beside it telling why (so the reason survives the database).
// Moves are durable: the note is written under a temp name, fsynced and renamed; the packet is
// fsynced, hard-linked into quarantine/ (link never replaces an existing file), the folder
// fsynced, and only then removed from jobs/, and jobs/ fsynced. A crash leaves the packet in
// jobs/, in quarantine/, or in both (then the next run finishes the move): never in neither.
import { closeSync, constants, copyFileSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir, writeFileDurably } from '../sys/durable.js';
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
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
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

function fsyncFile(path: string): void {
  // Never blocking: a FIFO renamed over the name meanwhile must not hang the processor.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A name in quarantine/ not taken by another packet: NAME, else NAME with ~2, ~3... */
function freeName(dir: string, name: string): string {
  if (!existsSync(join(dir, name))) return name;
  const base = name.replace(/\.fspl$/, '');
  for (let i = 2; ; i++) {
    const n = `${base}~${i}.fspl`;
    if (!existsSync(join(dir, n))) return n;
  }
}

/**
 * Move the job file `name` into quarantine, with `note` as NAME.json beside it. Returns the
 * path it has there, relative to the queue (as the journal records it).
 */
export function quarantineJob(queue: Queue, name: string, note: object): string {
  ensureDir(stateDir(queue.dir));
  const dir = quarantineDir(queue.dir);
  ensureDir(dir);
  const dest = freeName(dir, name);
  const src = queue.jobPath(name);
  writeFileDurably(join(dir, `${dest}.json`), join(dir, `.${dest}.json.tmp`), `${JSON.stringify(note, null, 2)}\n`);
  fsyncFile(src);
  try {
    linkSync(src, join(dir, dest));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    // quarantine/ on another file system: copy under a temp name, fsync, rename.
    const tmp = join(dir, `.${dest}.tmp`);
    copyFileSync(src, tmp);
    fsyncFile(tmp);
    renameSync(tmp, join(dir, dest));
  }
  fsyncDir(dir);
  unlinkSync(src);
  fsyncDir(queue.jobsDir);
  return `${STATE_DIR}/${QUARANTINE}/${dest}`;
}
