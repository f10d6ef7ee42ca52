// One job's runs as the journal sees them (issue 4): attempts with --retries and --backoff,
// the action decided after the last one, and the order in which it is committed:
//
//   run -> journal the outcome and action (durable) -> nextseq (durable) -> quarantine or
//   delete the file(s) -> journal "done"
//
// and, at the start of every run, the completion of whatever a crashed processor left between
// those steps. The crash points and what the next run does: spec/job-lifecycle.md.
import { unlinkSync } from 'node:fs';
import { DecoderError } from '../codec/external.js';
import { log } from '../log.js';
import { PacketError } from '../packet/codec.js';
import { type Action, type Attempt, FAILURES, type Journal, type JobRef, type OrderBy, packetId, type RunRow } from '../queue/journal.js';
import { quarantineJob } from '../queue/quarantine.js';
import { stillNames } from '../queue/jobfile.js';
import type { Queue, ScannedJob } from '../queue/queue.js';

/** A job file as a scan found it: its name, and the identity of what was read. */
type JobFile = Pick<ScannedJob, 'name' | 'identity'>;
import type { Staged } from '../queue/seqfile.js';
import { crashPoint } from '../sys/crashPoint.js';
import { interrupts } from './interrupts.js';
import type { Outcome, RunFacts, RunKind } from './job.js';

export type OnError = 'retry' | 'delete' | 'leave' | 'quarantine';

export interface RetryOptions {
  onError: OnError;
  neverDelete: boolean;
  /** Runs again after a failure, counted over every run the journal knows. */
  retries: number;
  /** Pause before the k-th retry of a run: backoff × 2^(k-1) seconds. */
  backoffSeconds: number;
}

/**
 * A job file that turned out not to be the job after all, so no run of it is recorded:
 * `vanished`, removed or replaced since the scan (look again); `unverified`, a required
 * signature is missing or wrong (the file is unreadable, whatever seq it claims).
 */
export type Skip = { skip: 'vanished' } | { skip: 'unverified'; reason: string };

export interface Ran {
  outcome: Outcome;
  attempt: Attempt;
}

const iso = (ms: number) => new Date(ms).toISOString();

const factsOf = (o: Outcome): RunFacts => o.facts ?? { kind: o.ok ? 'success' : 'error' };

export function jobRef(job: ScannedJob & { header: NonNullable<ScannedJob['header']> }): JobRef {
  return { seq: job.header.seq, file: job.name, header: job.header, packet: packetId(job.header) };
}

/** Sleep up to `seconds`, waking early when fspool is told to stop. */
async function pause(seconds: number): Promise<void> {
  const end = Date.now() + seconds * 1000;
  while (!interrupts.signal && Date.now() < end) {
    await new Promise((r) => setTimeout(r, Math.min(100, end - Date.now())));
  }
}

/**
 * Run a job, again after each failure while the journal counts at most `retries` failures of
 * it. Every run gets at least one try (under retry, fspl's meaning: it runs again next time).
 */
export async function runAttempts(
  journal: Journal,
  ref: JobRef,
  orderBy: OrderBy,
  label: string,
  opts: RetryOptions,
  run: () => Promise<Outcome | Skip>,
): Promise<Ran | Skip> {
  for (let retry = 1; ; retry++) {
    // The first attempt's row and the packet's earlier success come in one transaction.
    const { lastSuccess: before, ...attempt } = journal.begin(ref, orderBy, retry === 1);
    if (before) log.warn(`${label} already ran successfully at ${iso(before.endedAt ?? before.startedAt)} (journal); running it again because it is due once more`);
    crashPoint('attempt-recorded');
    const outcome = await run();
    if ('skip' in outcome) {
      journal.discard(attempt);
      return outcome;
    }
    crashPoint('receiver-exited');
    const facts = factsOf(outcome);
    if (outcome.ok || outcome.fatal || outcome.interrupted || !FAILURES.includes(facts.kind)) return { outcome, attempt };
    const failures = journal.failures(ref.packet) + 1;
    if (failures > opts.retries || interrupts.signal) return { outcome, attempt };
    const wait = opts.backoffSeconds * 2 ** (retry - 1);
    log.error(`${label} failed: ${outcome.reason}`);
    log.info(`${label}: retry ${retry} in ${wait}s (${failures} failure(s) of ${opts.retries + 1} allowed)`);
    journal.finish(attempt, facts, outcome.reason, 'retry');
    crashPoint('backoff');
    await pause(wait);
    if (interrupts.signal) {
      // Stopped during the pause: the job stays queued, as after an interrupted run.
      return { outcome: { ok: false, reason: `interrupted by ${interrupts.signal}`, interrupted: interrupts.signal, facts: { kind: 'interrupted', signal: interrupts.signal } }, attempt: { ...attempt, id: undefined } };
    }
  }
}

/** What becomes of the job after its last run; undefined when it was interrupted. */
export function decide(outcome: Outcome, opts: RetryOptions): Action | undefined {
  if (outcome.ok) return opts.neverDelete ? 'keep' : 'delete';
  if (outcome.interrupted) return undefined;
  if (outcome.fatal) return 'stop';
  switch (opts.onError) {
    case 'retry':
      return 'stop';
    case 'delete':
      return opts.neverDelete ? 'keep' : 'delete';
    case 'leave':
      return 'keep';
    case 'quarantine':
      return 'quarantine';
  }
}

/** Journal how the run ended and what is to be done; durable when it changes the queue. */
export function record(journal: Journal, ran: Ran, action: Action | undefined): void {
  const o = ran.outcome;
  journal.finish(ran.attempt, factsOf(o), o.ok ? o.note : o.reason, action);
  crashPoint('outcome-recorded');
}

/**
 * Carry out a recorded action: nextseq first (sequence order), then the files. Each step is
 * idempotent, so that a later run can finish what a crashed one began. `staged`: nextseq's
 * temp file, already written and fsynced with seq+1. Returns where quarantined files went.
 */
export function carryOut(
  queue: Queue,
  journal: Journal,
  job: { id: number | undefined; seq: bigint; orderBy: OrderBy; action: Action; note: object },
  files: JobFile[],
  recovering: boolean,
  staged?: Staged,
): string | undefined {
  if (job.orderBy === 'sequence') {
    if (!recovering || queue.nextseq.read() === job.seq) {
      (staged ?? queue.nextseq.stage(job.seq + 1n)).commit();
      crashPoint('nextseq-written');
    }
  }
  let movedTo: string | undefined;
  if (job.action === 'quarantine') {
    for (const f of stillOurs(queue, files)) movedTo ??= quarantineJob(queue, f.name, job.note);
    crashPoint('quarantined');
  } else if (job.action === 'delete') {
    removeJobFiles(queue, files);
    crashPoint('files-removed');
  }
  journal.done(job.id, recovering ? 'recovered' : 'done', movedTo);
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
  for (const f of stillOurs(queue, files)) {
    try {
      unlinkSync(queue.jobPath(f.name));
      any = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return any;
}

/** Carry out the action of a run that just ended (recorded by record()). */
export function commitJob(queue: Queue, journal: Journal, ran: Ran, action: Action, orderBy: OrderBy, files: JobFile[], label: string, staged?: Staged): void {
  const ref = ran.attempt.job;
  const note = action === 'quarantine' ? quarantineNote(ref, ran.outcome, ran.attempt.attempt, journal.failures(ref.packet)) : {};
  const movedTo = carryOut(queue, journal, { id: ran.attempt.id, seq: ref.seq, orderBy, action, note }, files, false, staged);
  if (movedTo) log.warn(`${label} moved to quarantine: ${queue.dir.replace(/\/$/, '')}/${movedTo}`);
}

/** The journal's word for a run that could not even start delivering. */
export function failureKind(e: unknown): RunKind {
  if (e instanceof DecoderError) return 'decoder-failure';
  if (e instanceof PacketError) return 'bad-packet';
  return 'error';
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

/**
 * At the start of a run, under the queue lock: report attempts a dead processor left
 * 'running' (they run again: at-least-once), and complete actions it recorded but did not
 * finish (without running the job again: exactly-once). Returns the job files it removed or
 * moved, for the caller's picture of jobs/.
 */
export function recover(queue: Queue, journal: Journal, jobs: ScannedJob[]): string[] {
  const next = queue.nextseq.readIfExists();
  const { crashed, unrecorded } = journal.closeAbandoned((r) => r.orderBy === 'sequence' && next !== undefined && r.seq < next);
  for (const r of crashed) {
    log.warn(
      `job ${r.seq} (${queue.jobPath(r.file)}): attempt ${r.attempt}, started at ${iso(r.startedAt)} by fspool pid ${r.pid}, was interrupted: fspool died while it ran; the job runs again when due`,
    );
  }
  for (const r of unrecorded) {
    log.info(`job ${r.seq} (${queue.jobPath(r.file)}): attempt ${r.attempt}, started at ${iso(r.startedAt)} by fspool pid ${r.pid}, ended while the journal was unavailable; the queue has moved past it`);
  }
  const pending = journal.pending();
  if (pending.length === 0) return [];
  const ids = new Map<string, ScannedJob[]>();
  for (const j of jobs) {
    if (!j.header) continue;
    const id = packetId(j.header);
    ids.set(id, [...(ids.get(id) ?? []), j]);
  }
  const gone: string[] = [];
  for (const r of pending) {
    const files = ids.get(r.packet) ?? [];
    const action = r.action!;
    const note = recoveredNote(r);
    const movedTo = carryOut(queue, journal, { id: r.id, seq: r.seq, orderBy: r.orderBy, action, note }, files, true);
    if (action !== 'keep') gone.push(...files.map((f) => f.name));
    const what = r.outcome === 'success' ? 'succeeded' : `failed (${r.outcome})`;
    log.warn(
      `job ${r.seq} (${queue.jobPath(r.file)}) ${what} at ${iso(r.endedAt ?? r.startedAt)}, but fspool stopped before it was done with it; ` +
        `completed now without running it again (${describeAction(action, r.orderBy)}${movedTo ? ` to ${movedTo}` : ''})`,
    );
  }
  return gone;
}

function recoveredNote(r: RunRow): object {
  return {
    seq: String(r.seq),
    file: r.file,
    packet: r.packet,
    quarantined_at: iso(Date.now()),
    attempts: r.attempt,
    last_outcome: r.outcome,
    last_detail: r.detail,
    exit_code: r.exitCode,
    signal: r.signal,
    stderr_tail: r.stderrTail,
  };
}

function describeAction(a: Action, orderBy: OrderBy): string {
  const next = orderBy === 'sequence' ? 'nextseq advanced, ' : '';
  if (a === 'delete') return `${next}file deleted`;
  if (a === 'quarantine') return `${next}file quarantined`;
  return `${next}file kept`;
}
