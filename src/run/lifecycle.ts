// The life of one job, from the moment it is due to its record, in one place
// (spec/job-lifecycle.md has the states and the crash points):
//
//   1. before: room on the queue's file system, and (sequence order) next+1 staged in
//      nextseq.temp, so that a job whose completion could not be recorded never starts;
//   2. runs: a 'running' row in the journal, the receiver, the outcome; again after a failure
//      while --retries allows, after a pause;
//   3. the action decided after the last run (policy.ts), journaled with the outcome, durably
//      when it changes the queue;
//   4. the commit: nextseq (the staged temp renamed into place), then the files (deleted or
//      quarantined), then the row marked done;
//   5. what the job's end means for the run: go on, or stop.
//
// A crash between any two steps is completed or repeated by the next run (recover.ts).
import { unlinkSync } from 'node:fs';
import { describe, FspoolError } from '../errors.js';
import { type Action, type Attempt, COMMITTING, type JobRef, type Journal, type OrderBy, packetId, type RunFacts } from '../queue/journal.js';
import { type Readable } from '../queue/jobIndex.js';
import { stillNames } from '../queue/jobfile.js';
import { asOwner, foreignOwner } from '../queue/owner.js';
import { quarantineJob } from '../queue/quarantine.js';
import type { Queue, ScannedJob } from '../queue/queue.js';
import type { Staged } from '../queue/seqfile.js';
import { warmSpawner } from '../sys/guarded.js';
import { after } from '../sys/timer.js';
import type { RunContext } from './context.js';
import type { Outcome } from './policy.js';
import { type FileRunOptions, runFile, type Skip } from './jobFile.js';
import { conclude, decide, type ErrorPolicy, isFailure, retryPause, type RunEffect } from './policy.js';
import { lackOfSpace } from './preflight.js';

export type JobOptions = FileRunOptions & ErrorPolicy;

/** What a processor works with while it runs one queue. */
export interface Processing {
  queue: Queue;
  journal: Journal;
  opts: JobOptions;
  ctx: RunContext;
}

/** A job file as a scan found it: its name, and the identity of what was read. */
export type JobFile = Pick<ScannedJob, 'name' | 'identity'>;

/** How a job's life ended: skipped (not the job after all), or over with this effect on the run. */
export type JobEnd = Exclude<Skip, { skip: 'not-started' }> | { action: Action | undefined; effect: RunEffect };

/** A job whose completion could not be recorded, so it was not started (no space, say). */
export class NotStarted extends FspoolError {
  override name = 'NotStarted';
}

const iso = (ms: number) => new Date(ms).toISOString();
const factsOf = (o: Outcome): RunFacts => o.facts ?? { kind: o.ok ? 'success' : 'error' };

export function jobRef(job: Readable): JobRef {
  return { seq: job.header.seq, file: job.name, header: job.header, packet: packetId(job.header) };
}

/** Sleep up to `seconds`, waking early when the run is told to stop. */
function pause(seconds: number, ctx: RunContext): Promise<void> {
  return new Promise((resolve) => {
    const timer = after(seconds, done);
    const undo = ctx.stop.onSignal(done);
    function done() {
      timer.clear();
      undo();
      resolve();
    }
  });
}

/**
 * Live the due job `job` (with `copies`, identical files of the same packet, itself included)
 * to its end. Throws NotStarted when its completion could not be recorded; other throws are
 * errors of the processor's own (the queue cannot be written any more).
 */
export async function lifeOfJob(p: Processing, job: Readable, copies: Readable[], order: OrderBy): Promise<JobEnd> {
  const { queue, journal, opts, ctx } = p;
  const seq = job.header.seq;
  const label = `job ${seq} (${job.path})`;

  // The receiver is started by the spawner helper: its start goes on beside the work below.
  warmSpawner();
  // 1. Before: the completion must be recordable. next+1 goes into nextseq's temp file now;
  // its fsync runs in the thread pool while the job runs.
  const cramped = lackOfSpace(queue);
  if (cramped) throw new NotStarted(`${cramped}; job ${seq} was not run`);
  let staged: Promise<Staged> | undefined;
  if (order === 'sequence') {
    try {
      staged = queue.nextseq.stageConcurrently(seq + 1n);
    } catch (e) {
      throw new NotStarted(`${describe(e)}; job ${seq} was not run: its completion could not be recorded`);
    }
    staged.catch(() => {}); // a late failure (the fsync) is reported by the commit below
  }
  try {
    // 2. Runs.
    const ref = jobRef(job);
    let outcome: Outcome;
    let attempt: Attempt;
    for (let retry = 1; ; retry++) {
      const ran = await ctx.hooks?.beforeRun({ seq, file: job.name });
      let o: Outcome | Skip;
      const started = Date.now();
      try {
        // The first attempt's row and the packet's earlier success come in one transaction.
        const { lastSuccess: before, ...a } = journal.begin(ref, order, retry === 1);
        attempt = a;
        if (before) ctx.log.warn(`${label} already ran successfully at ${iso(before.endedAt ?? before.startedAt)} (journal); running it again because it is due once more`);
        ctx.crash.reach('attempt-recorded');
        o = await runFile(queue, job, opts, ctx);
      } catch (e) {
        ran?.(undefined);
        throw e;
      }
      ran?.('skip' in o ? undefined : { outcome: factsOf(o).kind, seconds: (Date.now() - started) / 1000, bytes: o.facts?.bytes ?? 0 });
      if ('skip' in o) {
        journal.discard(attempt);
        if (o.skip === 'not-started') throw new NotStarted(`${label}: ${o.reason}`);
        return o;
      }
      outcome = o;
      ctx.crash.reach('receiver-exited');
      const failures = isFailure(outcome) ? journal.failures(ref.packet) + 1 : 0;
      const wait = retryPause(opts, outcome, failures, retry, ctx.stop.stopping);
      if (wait === undefined) break;
      ctx.log.error(`${label} failed: ${(outcome as { reason: string }).reason}`);
      ctx.log.info(`${label}: retry ${retry} in ${wait}s (${failures} failure(s) of ${opts.retries + 1} allowed)`);
      journal.finish(attempt, factsOf(outcome), (outcome as { reason: string }).reason, 'retry');
      ctx.crash.reach('backoff');
      await pause(wait, ctx);
      const sig = ctx.stop.requested;
      if (sig) {
        // Stopped during the pause: the job stays queued, as after an interrupted run; its row
        // was closed as a retry.
        outcome = { ok: false, reason: `interrupted by ${sig}`, interrupted: sig, facts: { kind: 'interrupted', signal: sig } };
        attempt = { ...attempt, id: undefined };
        break;
      }
    }

    // 3. The action, journaled (durably when it changes the queue) before it is carried out.
    const action = decide(outcome, opts);
    journal.finish(attempt, factsOf(outcome), outcome.ok ? outcome.note : outcome.reason, action);
    ctx.crash.reach('outcome-recorded');
    const { effect, lines } = conclude(outcome, label, opts);
    for (const [level, line] of lines) ctx.log[level](line);

    // 4. The commit.
    if (action !== undefined && COMMITTING.includes(action)) {
      const ready = staged;
      staged = undefined;
      try {
        const note = action === 'quarantine' ? quarantineNote(ref, outcome, attempt.attempt, journal.failures(ref.packet)) : {};
        const movedTo = carryOut(p, { id: attempt.id, seq, orderBy: order, action, note }, copies, false, await ready);
        if (movedTo) ctx.log.warn(`${label} moved to quarantine: ${queue.dir.replace(/\/$/, '')}/${movedTo}`);
      } catch (e) {
        throw new FspoolError(
          `${label} ran, but recording that failed: ${describe(e)}; the next run completes the recording, or runs the job again if it could not be journaled`,
        );
      }
    }
    // 5. What it means for the run.
    return { action, effect };
  } finally {
    // Not used after all: never leave the temp file being written once the lock is dropped.
    if (staged) await staged.then((st) => st.abort(), () => {});
  }
}

/**
 * Carry out a recorded action: nextseq first (sequence order), then the files. Each step is
 * idempotent, so that a later run can finish what a crashed one began. `staged`: nextseq's
 * temp file, already written and fsynced with seq+1. Returns where quarantined files went.
 *
 * nextseq's rename is not followed by a directory fsync when the journal holds the action: a
 * rename lost to a power cut is redone from the journal's pending row, as a crash there would
 * be (one fsync less per job); without a journal, nextseq is the only record and is made
 * durable at once.
 */
export function carryOut(
  p: Pick<Processing, 'queue' | 'journal' | 'ctx'>,
  row: { id: number | undefined; seq: bigint; orderBy: OrderBy; action: Action; note: object },
  files: JobFile[],
  recovering: boolean,
  staged?: Staged,
): string | undefined {
  const { queue, journal, ctx } = p;
  const durable = !journal.active || row.id === undefined;
  if (row.orderBy === 'sequence') {
    if (!recovering || queue.nextseq.read() === row.seq) {
      (staged ?? queue.nextseq.stage(row.seq + 1n)).commit(durable);
      ctx.crash.reach('nextseq-written');
    }
  }
  let movedTo: string | undefined;
  if (row.action === 'quarantine') {
    for (const f of stillOurs(queue, files)) movedTo ??= quarantineJob(queue, f.name, row.note, f.identity);
    ctx.crash.reach('quarantined');
  } else if (row.action === 'delete') {
    removeJobFiles(queue, files);
    ctx.crash.reach('files-removed');
  }
  journal.done(row.id, recovering ? 'recovered' : 'done', movedTo);
  return movedTo;
}

/**
 * The files that still hold what was read: a packet renamed over one of the names since is
 * another packet, left for the next look.
 */
function stillOurs(queue: Queue, files: JobFile[]): JobFile[] {
  return files.filter((f) => !f.identity || stillNames(queue.jobPath(f.name), f.identity));
}

/** Unlink the job files that still hold what was read; true if any was removed. */
export function removeJobFiles(queue: Queue, files: JobFile[]): boolean {
  let any = false;
  // As the queue's owner, where root works in another user's queue: a jobs/ swapped for a
  // symlink since the check leads the unlink nowhere the owner could not remove (owner.ts).
  const owner = foreignOwner(queue.dir);
  for (const f of stillOurs(queue, files)) {
    try {
      asOwner(owner, () => unlinkSync(queue.jobPath(f.name)));
      any = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return any;
}

/** What NAME.json beside a quarantined packet says. */
export function quarantineNote(ref: JobRef, outcome: Outcome, attempts: number, failures: number): object {
  const f = factsOf(outcome);
  return {
    seq: String(ref.seq),
    file: ref.file,
    packet: ref.packet,
    quarantined_at: iso(Date.now()),
    attempts,
    failures,
    last_outcome: f.kind,
    last_detail: outcome.ok ? null : outcome.reason,
    exit_code: f.exitCode ?? null,
    signal: f.signal ?? null,
    stderr_tail: f.stderrTail ?? null,
  };
}
