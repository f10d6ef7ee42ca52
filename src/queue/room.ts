// Room on a queue's file system for recording a job. A processor checks it before each job
// (a job that ran but could not be recorded would run again), and queue-status reports its
// lack, since no job runs until there is room.
import { accessSync, constants, statfsSync } from 'node:fs';
import { quarantineDir } from './quarantine.js';
import { stateDir } from './stateDb.js';

/**
 * Free space a job's record needs at the least: the journal's outcome and its "done" mark (a
 * few WAL frames of 4 KiB each), with room to spare. The next seq is staged before the job, so
 * its commit, a rename, needs none.
 */
const MIN_FREE_BYTES = 128 * 1024;

const size = (n: number) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${Math.floor(n / 1024)} KiB`);

/**
 * What is wrong with the room for recording a job in the queue `queueDir` (without the fix,
 * which the caller words), or undefined if there is enough: on the queue's file system (nextseq,
 * jobs/), and on those of its state folder (the journal) and quarantine when they exist, which
 * may be mounts of their own. A job whose outcome could not be journaled, or whose file could not
 * be quarantined, after nextseq moved past it would be neither due nor recorded. `asRoot`: the
 * writer may use the blocks reserved for root; others only the available ones.
 */
export function lackOfRoom(queueDir: string, asRoot: boolean): string | undefined {
  for (const dir of [queueDir, stateDir(queueDir), quarantineDir(queueDir)]) {
    const lack = lackOfSpace(dir, asRoot);
    if (lack) return lack;
  }
  return undefined;
}

/** lackOfRoom, for the file system of `dir` alone. */
function lackOfSpace(dir: string, asRoot: boolean): string | undefined {
  let free: number;
  try {
    const s = statfsSync(dir);
    free = (asRoot ? s.bfree : s.bavail) * s.bsize;
  } catch {
    // Not there (a folder not made yet), or no statfs here: a processor's staged nextseq still
    // proves the essentials.
    return undefined;
  }
  if (free >= MIN_FREE_BYTES) return undefined;
  return `no space left on device: ${size(free)} free on the file system of ${dir}, and recording a job needs ${size(MIN_FREE_BYTES)}`;
}

/**
 * Whether the file system of `dir` is mounted read-only: then no job can be recorded, whoever
 * runs the processor (the kernel says EROFS before it looks at permissions).
 */
export function readOnlyFs(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EROFS';
  }
  return false;
}
