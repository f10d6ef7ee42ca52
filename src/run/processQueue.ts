// queue-process: run a queue's jobs strictly in sequence order (or by timestamp), one at a
// time, under the flock on nextseq.lock. The life of a job is in spec/job-lifecycle.md.
import { closeSync, fstatSync, type Stats, watch as watch_ } from 'node:fs';
import { type DecodeContext, openPacket } from '../codec/decode.js';
import { describe, FspoolError } from '../errors.js';
import { log } from '../log.js';
import { encodeHeader } from '../packet/codec.js';
import { type Header, U64_MAX } from '../packet/header.js';
import { type FileIdentity, identityOf, NotAJobFile, openJobFile, sameIdentity } from '../queue/jobfile.js';
import { type Journal, packetId, type RunRow } from '../queue/journal.js';
import { staleJobs } from '../queue/status.js';
import type { Staged } from '../queue/seqfile.js';
import { identical, JOB_NAME, type Queue, type ScannedJob } from '../queue/queue.js';
import { attachState, PROCESSOR_BUSY_MS } from '../queue/state.js';
import { crashPoint } from '../sys/crashPoint.js';
import { native } from '../sys/native.js';
import { after } from '../sys/timer.js';
import { interrupts } from './interrupts.js';
import { checkWritable, lackOfSpace } from './preflight.js';
import { type DeliveryMode, preparePayload, verifyOnly } from './source.js';
import { type Outcome, type RunOptions, runJob } from './job.js';
import { commitJob, decide, failureKind, jobRef, record, recover, removeJobFiles as remove, type RetryOptions, runAttempts, type Skip } from './journaled.js';

export type { OnError } from './journaled.js';
export type OrderBy = 'sequence' | 'timestamp';

export interface ProcessOptions extends Omit<RunOptions, 'outputFile'>, RetryOptions {
  decode: DecodeContext;
  delivery: DeliveryMode;
  orderBy: OrderBy;
  maxJobs?: number;
  /** Keep running: process packets as they land (spec/processing.md, "Watching"). */
  watch?: boolean;
  /** With watch: look at jobs/ at least this often, events or not. */
  rescanSeconds?: number;
  saveOutput: boolean;
  waitLockSeconds?: number;
}

type Readable = ScannedJob & { header: Header };
const readable = (j: ScannedJob): j is Readable => j.header !== undefined;

/** What a run knows of jobs/: headers are read once per file and run, not once per job. */
class JobIndex {
  private readonly byName = new Map<string, ScannedJob>();
  /** The readable jobs by seq, in the order they were seen: finding the due job is O(1). */
  private readonly bySeq = new Map<bigint, Readable[]>();

  constructor(
    private readonly queue: Queue,
    private readonly decode: DecodeContext,
  ) {}

  /** Why each unreadable file was last reported, so that a watch does not repeat itself. */
  private readonly reported = new Map<string, string>();
  /**
   * Files that failed a required signature, by name, with the identity that failed and why: a
   * header that cannot be trusted makes no job, and reading it again at every look changes
   * nothing until the file itself changes.
   */
  private readonly distrusted = new Map<string, { identity?: FileIdentity; reason: string }>();

  /**
   * Read the headers of files that appeared since the last look, and again of those that could
   * not be read last time (a decoder that failed once, a key added since); forget vanished ones.
   * Returns what was read, with the unreadable only where the reason is new.
   */
  async refresh(): Promise<ScannedJob[]> {
    const names = this.queue.jobNames();
    const present = new Set(names);
    for (const n of this.byName.keys()) if (!present.has(n) || this.byName.get(n)!.error) this.forget(n);
    const complete = this.byName.size === 0; // issue 4: a first look lets the header cache prune
    const fresh = (await this.queue.scan(this.decode, names.filter((n) => !this.byName.has(n)), complete)).map((j) => {
      const d = this.distrusted.get(j.name);
      if (!d) return j;
      if (d.identity && j.identity && sameIdentity(d.identity, j.identity)) return { name: j.name, path: j.path, identity: j.identity, error: d.reason };
      this.distrusted.delete(j.name);
      return j;
    });
    for (const n of this.reported.keys()) if (!present.has(n)) this.reported.delete(n);
    const news = fresh.filter((j) => !j.error || this.reported.get(j.name) !== j.error);
    for (const j of fresh) {
      if (j.error) this.reported.set(j.name, j.error);
      else this.reported.delete(j.name);
    }
    for (const j of fresh) {
      this.byName.set(j.name, j);
      if (readable(j)) {
        const same = this.bySeq.get(j.header.seq);
        if (same) same.push(j);
        else this.bySeq.set(j.header.seq, [j]);
      }
    }
    return news;
  }

  /** The file does not prove the signature it must carry: unreadable from now on, until it changes. */
  distrust(job: Readable, reason: string): void {
    this.forget(job.name);
    const error = `fails --require-signature (${reason}), whatever seq it claims; not run`;
    this.distrusted.set(job.name, { identity: job.identity, reason: error });
    this.byName.set(job.name, { name: job.name, path: job.path, identity: job.identity, error });
    this.reported.set(job.name, error);
  }

  forget(name: string): void {
    const j = this.byName.get(name);
    if (!j) return;
    this.byName.delete(name);
    if (!readable(j)) return;
    const rest = (this.bySeq.get(j.header.seq) ?? []).filter((x) => x !== j);
    if (rest.length > 0) this.bySeq.set(j.header.seq, rest);
    else this.bySeq.delete(j.header.seq);
  }

  /** Files whose header could not be read, so that any of them could be any seq (not those a signature check refused: their seq is known, only untrusted). */
  unreadable(): ScannedJob[] {
    return this.all().filter((j) => j.error && !this.distrusted.has(j.name));
  }

  errorOf(name: string): string | undefined {
    return this.byName.get(name)?.error;
  }

  all(): ScannedJob[] {
    return [...this.byName.values()];
  }

  withSeq(seq: bigint): Readable[] {
    return [...(this.bySeq.get(seq) ?? [])];
  }
}

function reportUnreadable(jobs: ScannedJob[]): void {
  for (const j of jobs) if (j.error) log.warn(`cannot read job file ${j.path}: ${j.error}; skipped`);
}

/**
 * Files below nextseq are never run; what they call for depends on whether their packet ran:
 * a copy of one that succeeded, or one the queue moved past after a failure, is routine (INFO);
 * one that never ran here may be data never applied (its sender restarted its numbering), and
 * is never called removable (WARN).
 */
function reportStale(jobs: ScannedJob[], next: bigint, journal: Journal): void {
  const files = jobs.filter(readable).map((j) => ({ name: j.name, path: j.path, header: j.header, packet: packetId(j.header) }));
  const at = (r: RunRow) => new Date(r.endedAt ?? r.startedAt).toISOString();
  for (const f of staleJobs(files, next, journal)) {
    const what = `stale job file ${f.path}: seq ${f.header.seq} is below the queue's next seq ${next}; not run`;
    if (f.processed) log.info(`${what} (it succeeded at ${at(f.processed)}; queue-clean removes it)`);
    else if (f.ran) log.info(`${what} (it ran at ${at(f.ran)}, ${f.ran.outcome}, and the queue moved past it; queue-clean --stale removes it)`);
    else {
      const known = journal.active ? 'it never ran here' : 'whether it ran is not known (no journal)';
      log.warn(`${what}: ${known}; if its sender restarted its numbering, queue-set-next ${f.header.seq} runs it; queue-clean --stale --force removes it`);
    }
  }
}

/**
 * No job with the due seq: a gap, reported at INFO (the packet has not arrived; a transport
 * will bring it). But if files that could not be read might be that packet, waiting is not
 * enough: a person must give the key or decoder they need, or remove them, so the run fails.
 */
function reportGap(index: JobIndex, next: bigint): void {
  const all = index.all();
  const later = all.filter((j): j is Readable => readable(j) && j.header.seq > next);
  const bad = index.unreadable();
  if (later.length > 0) {
    const lowest = later.reduce((m, j) => (j.header.seq < m ? j.header.seq : m), later[0]!.header.seq);
    log.info(`waiting for seq ${next}: it has not arrived; ${later.length} later job(s) queued, the lowest is seq ${lowest}`);
  }
  if (bad.length > 0) {
    const files = bad.slice(0, 3).map((j) => `${j.path} (${j.error})`).join(', ') + (bad.length > 3 ? ` and ${bad.length - 3} more` : '');
    throw new FspoolError(`seq ${next} not found, and ${bad.length} job file(s) that cannot be read could hold it: ${files}; give the key or decoder they need, or remove them`);
  }
  if (later.length === 0) log.debug(`no job with seq ${next}; nothing to do`);
}

/** The file the scan read, opened again and still under its name; undefined if it was removed or replaced since. */
function reopen(job: Readable): number | undefined {
  let opened: { fd: number; stat: Stats };
  try {
    opened = openJobFile(job.path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || e instanceof NotAJobFile) return undefined;
    throw e;
  }
  if (job.identity && !sameIdentity(job.identity, identityOf(opened.stat))) {
    closeSync(opened.fd);
    return undefined;
  }
  // The receiver may get this fd as its stdin, which must be blocking.
  native().clearNonblock(opened.fd);
  return opened.fd;
}

/**
 * Whether a file with the due seq proves the signature --require-signature asks for: the
 * reason it does not, or undefined. Read in full, without a receiver.
 */
async function verifyFile(job: Readable, opts: ProcessOptions): Promise<string | undefined> {
  const fd = reopen(job);
  if (fd === undefined) return 'removed or replaced since it was read';
  try {
    return await verifyOnly(await openPacket(fd, opts.decode, 0));
  } catch (e) {
    return describe(e);
  } finally {
    closeSync(fd);
  }
}

/**
 * A job file that grew or was rewritten while its job ran was still being written under its
 * job name (in place, instead of under a temp name and renamed): what the receiver got may be
 * cut short, so the run cannot count as a success.
 */
function changedDuringRun(fd: number, job: Readable): Outcome | undefined {
  const now = identityOf(fstatSync(fd));
  if (!job.identity || (now.size === job.identity.size && now.mtimeMs === job.identity.mtimeMs)) return undefined;
  return {
    ok: false,
    reason: `the job file changed while the job ran (${job.identity.size} bytes, now ${now.size}): it was being written under its job name; a writer must use a temp name and rename`,
    facts: { kind: 'bad-packet' },
  };
}

/**
 * Run one job file: open and decode it again (it is the one we run) and deliver its payload.
 * Skipped if the file is gone or replaced since the scan, or does not prove a required signature.
 */
async function runFile(queue: Queue, job: Readable, opts: ProcessOptions): Promise<Outcome | Skip> {
  const location = { filename: job.name, queuedir: queue.dir, fullpath: job.path };
  const run: RunOptions = { ...opts, outputFile: opts.saveOutput ? `${job.path}.out` : undefined, keepStderrTail: true };
  const fd = reopen(job);
  if (fd === undefined) return { skip: 'vanished' };
  const extraFds: number[] = [];
  let cleanup = () => {};
  try {
    // A file just opened: the packet starts at offset 0.
    const prepared = await preparePayload(await openPacket(fd, opts.decode, 0), {
      mode: opts.delivery,
      keys: opts.decode.keys,
      fd,
      at: 0,
      spoolDir: queue.spoolDir,
      reopen: async () => {
        const again = reopen(job);
        if (again === undefined) throw new FspoolError(`${job.path} was removed or replaced while it was being verified`);
        extraFds.push(again);
        return openPacket(again, opts.decode, 0);
      },
    });
    if (!prepared.ok) return prepared.unverified ? { skip: 'unverified', reason: prepared.reason } : { ok: false, reason: prepared.reason };
    cleanup = prepared.cleanup;
    // Same identity, so the same bytes: unless a header differs, which only a file rewritten
    // in place within the same second and size could do. That is another packet, not this job.
    if (!encodeHeader(prepared.header).equals(encodeHeader(job.header))) {
      if (prepared.payload.kind === 'stream') prepared.payload.abort();
      return { skip: 'vanished' };
    }
    const outcome = await runJob({ header: prepared.header, location, payload: prepared.payload }, run);
    return (outcome.ok && changedDuringRun(fd, job)) || outcome;
  } catch (e) {
    if (e instanceof FspoolError && e.exitCode === 2) throw e;
    return { ok: false, reason: describe(e), facts: { kind: failureKind(e), bytes: 0 } };
  } finally {
    cleanup();
    closeSync(fd);
    for (const x of extraFds) closeSync(x);
  }
}

/**
 * Report how a job ended. Returns true when the job is over (success, or failure under
 * delete/leave), false when it was interrupted; throws to end the run with the job kept.
 */
function settle(outcome: Outcome, label: string, opts: ProcessOptions): boolean {
  if (outcome.ok) {
    if (outcome.note) log.warn(`${label}: ${outcome.note}`);
    log.info(`${label} succeeded`);
    return true;
  }
  if (outcome.interrupted) {
    log.warn(`${label} interrupted by ${outcome.interrupted}; it stays queued and runs again next time`);
    return false;
  }
  if (outcome.fatal) throw new FspoolError(`${label}: ${outcome.reason}; job kept`);
  log.error(`${label} failed: ${outcome.reason}`);
  if (opts.onError === 'retry') {
    throw new FspoolError(`stopping at ${label}: it failed and --on-error is retry; it stays queued and runs again next time`);
  }
  return true;
}

export async function processQueue(queue: Queue, opts: ProcessOptions): Promise<number> {
  queue.checkProcessable();
  const lock = await queue.nextseq.lock({ create: false, waitSeconds: opts.waitLockSeconds, what: `queue ${queue.dir}` });
  crashPoint('lock-taken');
  // Issue 4: the journal and the header cache (QUEUE/fspool/state.db), when they can be had.
  const state = attachState(queue, {
    create: true,
    busyMs: PROCESSOR_BUSY_MS,
    cacheHeaders: true,
    durable: true,
    without: 'going on without it in this run: no journal (a crash is handled as fspl would), no header cache',
  });
  interrupts.deferExit(true);
  try {
    checkWritable(queue, { deletes: !opts.neverDelete, savesOutput: opts.saveOutput, quarantines: opts.onError === 'quarantine' });
    const index = new JobIndex(queue, opts.decode);
    const first = await index.refresh();
    reportUnreadable(first);
    for (const name of recover(queue, state.journal, first)) index.forget(name);
    const budget: Budget = { left: opts.maxJobs };
    const pass = () => (opts.orderBy === 'timestamp' ? byTimestamp(queue, index, opts, state.journal, budget) : bySequence(queue, index, opts, state.journal, budget));
    const code = opts.watch ? await watch(queue, opts, pass, budget) : await pass();
    return interrupts.signal ? interrupts.exitCode : code;
  } finally {
    interrupts.deferExit(false);
    state.close();
    lock.release();
  }
}

/**
 * Record a finished job (nextseq, the file, the journal). If that fails (a full disk), say
 * which job ran and what becomes of it: the journal's pending entry lets the next run finish
 * the recording without running the job again; without a journal it runs again.
 */
async function commit(record: () => void | Promise<void>, label: string): Promise<void> {
  try {
    await record();
  } catch (e) {
    throw new FspoolError(`${label} ran, but recording that failed: ${describe(e)}; the next run completes the recording, or runs the job again if it could not be journaled (spec/job-lifecycle.md)`);
  }
}

/** How many more jobs this run may take (--maxjobs), across the passes of a watch. */
interface Budget {
  left: number | undefined;
}
const spent = (b: Budget) => b.left !== undefined && b.left <= 0;

/**
 * --watch: run a pass, then wait until a job file lands in jobs/ (inotify, through fs.watch),
 * the rescan interval passes (events can be missed: a full inotify queue, a network
 * filesystem), or a signal comes; and again. The lock is held throughout. A pass that stops
 * at a failure (--on-error retry) or an ambiguous seq is reported, and the watch goes on: the
 * job is tried again at the next arrival or rescan.
 */
async function watch(queue: Queue, opts: ProcessOptions, pass: () => Promise<number>, budget: Budget): Promise<number> {
  let wake: (() => void) | undefined;
  let woken = false;
  const poke = () => {
    woken = true;
    wake?.();
  };
  const watcher = watchDir(queue.jobsDir, (name) => {
    if (JOB_NAME.test(name)) poke();
  });
  const noSignal = interrupts.onSignal(poke);
  try {
    for (;;) {
      woken = false;
      try {
        await pass();
      } catch (e) {
        if (!(e instanceof FspoolError) || e.exitCode === 2) throw e;
        log.error(`${e.message}; watching on`);
      }
      if (interrupts.signal || spent(budget)) return 0;
      if (woken) continue; // something landed while the pass ran
      log.debug(`watching ${queue.jobsDir} for new packets`);
      await new Promise<void>((resolve) => {
        const timer = after(opts.rescanSeconds ?? 30, resolve);
        wake = () => {
          timer.clear();
          resolve();
        };
      });
      wake = undefined;
      if (interrupts.signal) return 0;
    }
  } finally {
    noSignal();
    watcher?.close();
  }
}

/** fs.watch on a directory, or undefined (with a WARN) where it cannot be had: rescans still come. */
function watchDir(dir: string, onName: (name: string) => void): { close(): void } | undefined {
  try {
    const w = watch_(dir, (_event, name) => {
      if (name) onName(name.toString());
    });
    w.on('error', (e) => log.warn(`cannot watch ${dir} (${describe(e)}); relying on rescans`));
    return w;
  } catch (e) {
    log.warn(`cannot watch ${dir} (${describe(e)}); relying on rescans`);
    return undefined;
  }
}

async function bySequence(queue: Queue, index: JobIndex, opts: ProcessOptions, journal: Journal, budget: Budget): Promise<number> {
  let next = queue.nextseq.read();
  reportStale(index.all(), next, journal);
  while (!interrupts.signal && !spent(budget)) {
    let candidates = index.withSeq(next);
    if (candidates.length === 0) {
      const fresh = await index.refresh();
      reportUnreadable(fresh);
      reportStale(fresh, next, journal);
      candidates = index.withSeq(next);
      if (candidates.length === 0) {
        reportGap(index, next);
        return 0;
      }
    }
    if (candidates.length > 1 && opts.decode.keys.requiresSignature && !identical(candidates.map((c) => c.path))) {
      // Anyone may drop a file claiming the due seq; only a signed one can make it ambiguous.
      for (const c of candidates) {
        const bad = await verifyFile(c, opts);
        if (bad !== undefined) {
          index.distrust(c, bad);
          log.warn(`job file ${c.path} claims seq ${next} but ${index.errorOf(c.name)}`);
        }
      }
      candidates = index.withSeq(next);
      if (candidates.length === 0) continue;
    }
    const paths = candidates.map((c) => c.path);
    if (candidates.length > 1) {
      if (!identical(paths)) {
        throw new FspoolError(`seq ${next} is ambiguous: ${paths.join(', ')} hold different packets; remove the wrong one`);
      }
      log.warn(`seq ${next} arrived ${candidates.length} times with identical content (${paths.join(', ')}); running it once`);
    }
    if (next === U64_MAX) {
      throw new FspoolError(`job ${next} is at the largest sequence number: nextseq could not advance past it; reset the queue with queue-set-next`);
    }
    const job = candidates[0]!;
    const label = `job ${next} (${job.path})`;
    // What the job's completion will write must be writable before it starts: next + 1 goes
    // into nextseq's temp file now (its fsync runs in the thread pool while the job runs), and
    // the file system must have room for the journal's record. A job that ran but could not be
    // recorded would run again.
    const cramped = lackOfSpace(queue);
    if (cramped) throw new FspoolError(`${cramped}; job ${next} was not run`);
    let staged: Promise<Staged> | undefined;
    try {
      staged = queue.nextseq.stageConcurrently(next + 1n);
    } catch (e) {
      throw new FspoolError(`${describe(e)}; job ${next} was not run: its completion could not be recorded`);
    }
    staged.catch(() => {}); // a late failure (the fsync) is reported by commit() below
    try {
      const ran = await runAttempts(journal, jobRef(job), 'sequence', label, opts, () => runFile(queue, job, opts));
      if ('skip' in ran) {
        if (ran.skip === 'vanished') {
          log.warn(`job ${next} (${job.path}) was removed or replaced before it could run; looking again`);
          index.forget(job.name);
        } else {
          index.distrust(job, ran.reason);
          log.warn(`job file ${job.path} claims seq ${next} but ${index.errorOf(job.name)}; looking for another`);
        }
        continue;
      }
      if (budget.left !== undefined) budget.left--;
      // The journal first (durably, when the queue is to change), so that a crash from here on
      // is completed by the next run without running the job again.
      const action = decide(ran.outcome, opts);
      record(journal, ran, action);
      if (!settle(ran.outcome, label, opts)) return 0;
      // Success, or failure under delete/leave/quarantine: the job is over. nextseq first,
      // durably; then the file. A crash between the two leaves a stale file, never a re-run.
      const ready = staged;
      staged = undefined;
      await commit(async () => commitJob(queue, journal, ran, action!, 'sequence', candidates, label, await ready), label);
      // Files that stay (never-delete, leave) stay known, so they are not reported as new stale files.
      if (action !== 'keep') for (const c of candidates) index.forget(c.name);
    } finally {
      // Not used after all: never leave the temp file being written once the lock is dropped.
      if (staged) await staged.then((st) => st.abort(), () => {});
    }
    next += 1n;
  }
  return 0;
}

async function byTimestamp(queue: Queue, index: JobIndex, opts: ProcessOptions, journal: Journal, budget: Budget): Promise<number> {
  reportUnreadable(await index.refresh());
  const jobs = index.all().filter(readable).sort((a, b) => {
    const x = a.header;
    const y = b.header;
    if (x.ctimeSecs !== y.ctimeSecs) return x.ctimeSecs < y.ctimeSecs ? -1 : 1;
    if (x.ctimeNanos !== y.ctimeNanos) return x.ctimeNanos - y.ctimeNanos;
    if (x.seq !== y.seq) return x.seq < y.seq ? -1 : 1;
    return a.name < b.name ? -1 : 1;
  });
  for (const job of jobs) {
    if (interrupts.signal || spent(budget)) break;
    const label = `job ${job.header.seq} (${job.path})`;
    // Without nextseq, the journal is what knows a packet ran: a copy delivered again is not
    // run again.
    const before = journal.active ? journal.lastSuccess(packetId(job.header)) : undefined;
    if (before) {
      const gone = !opts.neverDelete && remove(queue, [job]);
      log.info(`${label} is a copy of a packet that ran successfully at ${new Date(before.endedAt ?? before.startedAt).toISOString()} (journal); not run again${gone ? '; removed' : ''}`);
      index.forget(job.name);
      continue;
    }
    const cramped = lackOfSpace(queue);
    if (cramped) throw new FspoolError(`${cramped}; job ${job.header.seq} was not run`);
    const ran = await runAttempts(journal, jobRef(job), 'timestamp', label, opts, () => runFile(queue, job, opts));
    if ('skip' in ran) {
      if (ran.skip === 'vanished') log.warn(`job ${job.header.seq} (${job.path}) was removed or replaced before it could run`);
      else {
        index.distrust(job, ran.reason);
        log.warn(`job file ${job.path} ${index.errorOf(job.name)}`);
      }
      continue;
    }
    if (budget.left !== undefined) budget.left--;
    const action = decide(ran.outcome, opts);
    record(journal, ran, action);
    if (!settle(ran.outcome, label, opts)) return 0;
    await commit(() => commitJob(queue, journal, ran, action!, 'timestamp', [job], label), label);
  }
  return 0;
}
