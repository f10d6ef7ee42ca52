// Before a receiver starts, everything its job's completion will need must be there: a job
// that ran but could not be recorded runs again next time, which is the one thing a spooler
// must not do. So a processor proves, before the first job, that it can write what the commit
// writes (nextseq, the job files' directory, the quarantine) and that its command can be run,
// and before each job that the queue's file system has room; the staged nextseq (written before
// the job starts) proves the rest. Each failure says what to fix in one line, and nothing runs.
import { constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import { FspoolError } from '../errors.js';
import type { Queue } from '../queue/queue.js';
import { SYMLINK_FIX, symlinkProblem } from '../queue/owner.js';
import { quarantineDir } from '../queue/quarantine.js';
import { lackOfRoom } from '../queue/room.js';
import { stateDir } from '../queue/stateDb.js';
import { accessProblem, READ_ONLY, writable } from '../sys/access.js';
import { isSymlink } from '../sys/fd.js';

interface WhatCommits {
  /** Job files are deleted after success or --on-error delete. */
  deletes: boolean;
  /** --output-to saveboth writes jobs/NAME.out. */
  savesOutput: boolean;
  /** --on-error quarantine moves job files to QUEUE/fspool/quarantine/. */
  quarantines: boolean;
}

/**
 * Once per run, before any job, what a processor with these options needs: the directories its
 * commits write, and its command. Throws with what to fix.
 */
export function checkProcessor(queue: Queue, opts: { command: string; neverDelete: boolean; saveOutput: boolean; onError: string }): void {
  checkWritable(queue, { deletes: !opts.neverDelete, savesOutput: opts.saveOutput, quarantines: opts.onError === 'quarantine' });
  checkCommand(opts.command);
}

/** The directories the commits write. Throws with what to fix. */
function checkWritable(queue: Queue, what: WhatCommits): void {
  const problems: string[] = [];
  let linked = false;
  const dirProblem = writable(queue.dir); // nextseq is replaced by a rename in the queue directory
  if (dirProblem) problems.push(`${dirProblem}, so nextseq could not advance after a job`);
  if (what.deletes || what.savesOutput) {
    const jobsProblem = writable(queue.jobsDir);
    if (jobsProblem) problems.push(`${jobsProblem}, so ${what.deletes ? 'finished job files could not be removed' : 'jobs/NAME.out could not be written'}`);
  }
  if (what.quarantines) {
    // Never followed (queue/owner.ts): a symlink there would fail the move after the job ran.
    const link = [stateDir(queue.dir), quarantineDir(queue.dir)].find(isSymlink);
    // The deepest of QUEUE/fspool/quarantine/, QUEUE/fspool/ that exists is where the move writes.
    const dir = [quarantineDir(queue.dir), stateDir(queue.dir)].find((d) => existsSync(d));
    linked = link !== undefined;
    const quarantineProblem = link ? symlinkProblem(link) : dir ? writable(dir) : dirProblem;
    if (quarantineProblem && quarantineProblem !== dirProblem) problems.push(`${quarantineProblem}, so failed jobs could not be quarantined`);
  }
  if (problems.length > 0) {
    const readOnly = problems.filter((p) => p.includes(READ_ONLY));
    const others = problems.length - readOnly.length - (linked ? 1 : 0);
    const fixes = [
      ...(readOnly.length ? ['mount it read-write'] : []),
      ...(linked ? [SYMLINK_FIX] : []),
      ...(others ? ["run as the queue's owner or make it writable"] : []),
    ];
    throw new FspoolError(`cannot process queue ${queue.dir}: ${problems.join('; ')}; ${fixes.join(', and ')}; nothing was run`);
  }
}

/** glibc's execvpe searches this when PATH is unset (confstr _CS_PATH). */
const DEFAULT_PATH = '/bin:/usr/bin';

/**
 * The receiver's command, looked for as the spawner's execvpe will
 * (a name with a slash as it is, else in each directory of PATH: fspool's own, which the spawner
 * inherits). A typo is then an error at once, not a success at every poll of an empty queue until
 * the first job fails. Throws with what to fix.
 */
function checkCommand(command: string): void {
  if (command.includes('/')) {
    const problem = accessProblem(command, constants.X_OK);
    if (problem) throw new FspoolError(`cannot run command: ${command}: ${problem.why}; give the path of an executable file; nothing was run`);
    return;
  }
  const path = process.env.PATH ?? DEFAULT_PATH;
  // An empty entry is the current directory, as for execvpe. One there but not executable is
  // what execvpe reports (EACCES) when no other entry has it.
  let denied: string | undefined;
  for (const dir of path.split(':')) {
    const candidate = join(dir || '.', command);
    const problem = accessProblem(candidate, constants.X_OK);
    if (!problem) return;
    if (problem.code === 'EACCES') denied ??= candidate;
  }
  if (denied) throw new FspoolError(`cannot run command: ${command}: ${denied} is not executable: permission denied (EACCES); make it executable, or give another's full path; nothing was run`);
  throw new FspoolError(`cannot run command: ${command}: not found in PATH (${path}); give its full path, or set PATH; nothing was run`);
}

/** Before each job: room for recording it (queue/room.ts), or why not. */
export function lackOfSpace(queue: Queue): string | undefined {
  const lack = lackOfRoom(queue.dir, process.geteuid?.() === 0);
  return lack && `${lack}; free some space`;
}
