// A processor of one queue: it takes the queue lock and runs the due jobs strictly in sequence
// order (or by timestamp), once or watching for more (spec/processing.md). Each run is an
// object with its own context, so that several can go side by side in one process (`fspool
// serve`); `queue-process` is the one-queue case. The life of each job is in lifecycle.ts.
import { statSync, watch as watchFs } from 'node:fs';
import type { DecodeContext } from '../codec/decode.js';
import { describe, FspoolError, someOf } from '../errors.js';
import { U64_MAX } from '../packet/header.js';
import type { FileLock } from '../queue/lock.js';
import { FAILURES, type Journal } from '../queue/journal.js';
import { JobIndex, readable, type Readable } from '../queue/jobIndex.js';
import { identicalAsync, JOB_NAME, type Queue, type ScannedJob } from '../queue/queue.js';
import { attachState, PROCESSOR_BUSY_MS, type QueueState } from '../queue/state.js';
import type { StateDb } from '../queue/stateDb.js';
import { staleJobs, unreadableFix } from '../queue/status.js';
import { packetId } from '../queue/journal.js';
import { after } from '../sys/timer.js';
import type { RunContext } from './context.js';
import { verifyFile } from './jobFile.js';
import type { Unverified } from './source.js';
import { type JobOptions, lifeOfJob, NotStarted, type Processing, removeJobFiles } from './lifecycle.js';
import { watchBackoff } from './policy.js';
import { checkProcessor, lackOfSpace } from './preflight.js';
import { recover } from './recover.js';

export type OrderBy = 'sequence' | 'timestamp';

export interface ProcessOptions extends JobOptions {
  orderBy: OrderBy;
  maxJobs?: number;
  /** Keep running: process packets as they land (spec/processing.md, "Watching"). */
  watch?: boolean;
  /** With watch: look at jobs/ at least this often. */
  rescanSeconds?: number;
  waitLockSeconds?: number;
  /** Another processor holds the lock: end quietly with status 0 (cron). */
  skipIfLocked?: boolean;
  /** Called after each pass, failed or not, with the run's state database (receipts: receiptHook.ts). */
  afterPass?: (db: StateDb | undefined, ctx: RunContext) => Promise<void>;
}

/** A job failed and the run stopped at it (--on-error retry): a watch tries it again later. */
export class JobFailed extends FspoolError {
  override name = 'JobFailed';
}

/**
 * The queue cannot go on until something changes (an ambiguous seq, unreadable files that
 * could be the due one, no room to record a job): a watch says so once and looks again.
 */
export class QueueBlocked extends FspoolError {
  override name = 'QueueBlocked';
}

const at = (ms: number) => new Date(ms).toISOString();

/**
 * jobs/ could not be read because it is not there: in a watch, a directory replaced under it (two
 * renames) or moved away for a moment, which is looked at again rather than ending the watch.
 */
const jobsDirGone = (e: unknown, jobsDir: string) => (e as NodeJS.ErrnoException).code === 'ENOENT' && (e as NodeJS.ErrnoException).path === jobsDir;

export class QueueProcessor {
  private readonly index: JobIndex;
  private journal!: Journal;
  private db: StateDb | undefined;
  private state: QueueState | undefined;
  /** When the state database was last tried again after it was lost. */
  private retriedAt = 0;
  /** Jobs this run may still take (--maxjobs), across the passes of a watch. */
  private left: number | undefined;
  /** The gap last reported, so that a watch says "waiting for seq N" once, not at every look. */
  private reportedGap: bigint | undefined;
  /** Refusals the journal could not take when they were made (the latest of each file): written once it can. */
  private readonly unjournaled = new Map<string, { ref: Parameters<Journal['recordRefusal']>[0]; order: OrderBy | 'released'; detail: string; changedMs: number }>();

  readonly opts: ProcessOptions;
  private readonly lookDecode: DecodeContext;

  constructor(
    readonly queue: Queue,
    opts: ProcessOptions,
    readonly ctx: RunContext,
  ) {
    // Decoders work for this run: those of the running job die when it is interrupted, those
    // that only read headers (scans, signature checks) as soon as a stop is asked for.
    this.opts = { ...opts, decode: { ...opts.decode, guard: (h) => ctx.stop.guard(h) } };
    this.lookDecode = { ...opts.decode, guard: (h) => ctx.stop.guardLook(h) };
    this.index = new JobIndex(queue, this.lookDecode);
    this.left = opts.maxJobs;
  }

  private get spent(): boolean {
    return this.left !== undefined && this.left <= 0;
  }

  private get processing(): Processing {
    return { queue: this.queue, journal: this.journal, opts: this.opts, ctx: this.ctx };
  }

  /** Run the queue: the exit status (0, or 128+N after a signal); throws on errors. */
  async run(): Promise<number> {
    const { queue, opts, ctx } = this;
    queue.checkProcessable();
    let lock: FileLock;
    try {
      lock = await queue.nextseq.lock({ create: false, waitSeconds: opts.waitLockSeconds, what: `queue ${queue.dir}`, giveUp: () => ctx.stop.stopping });
    } catch (e) {
      if (ctx.stop.stopping) return ctx.stop.exitCode;
      if (opts.skipIfLocked && e instanceof FspoolError && /is locked by another process/.test(e.message)) {
        ctx.log.debug(`queue ${queue.dir} is locked by another processor; skipped (--skip-if-locked)`);
        return 0;
      }
      throw e;
    }
    ctx.crash.reach('lock-taken');
    if (ctx.stop.stopping) {
      lock.release();
      return ctx.stop.exitCode;
    }
    // One pass over a jobs/ without a job file (cron polling an idle queue) needs nothing of
    // the state database, whose opening (loading SQLite) would be most of the run's cost: what
    // a crash left unfinished in the journal concerns a file no longer here, and is completed by
    // the next run that has one (spec/job-lifecycle.md, "Crash points").
    const dir = opts.watch || opts.afterPass ? undefined : queue.jobDir();
    if (dir?.length === 0 && dir.unnamed.length === 0) {
      try {
        checkProcessor(queue, opts);
        ctx.log.debug(`queue ${queue.dir} has no job file; nothing to do`);
        return 0;
      } finally {
        lock.release();
      }
    }
    // The journal and the header cache (QUEUE/fspool/state.db), when they can be had.
    this.attach(false);
    try {
      checkProcessor(queue, opts);
      // jobs/ as read above, not a second read (each warns of the names that are not UTF-8).
      const first = await this.index.refresh(dir);
      this.reportUnreadable(first);
      for (const name of recover(this.processing, first)) this.index.forget(name);
      const code = opts.watch ? await this.watch() : await this.pass();
      return ctx.stop.requested ? ctx.stop.exitCode : code;
    } finally {
      this.state?.close();
      lock.release();
    }
  }

  private attach(quiet: boolean): void {
    this.state = attachState(this.queue, {
      create: true,
      busyMs: PROCESSOR_BUSY_MS,
      cacheHeaders: true,
      without: this.opts.watch
        ? `going on without it until it can be used again (tried before a pass, at most every ${this.opts.rescanSeconds ?? 30}s): meanwhile no journal (a crash is handled as fspl would), no header cache`
        : 'going on without it in this run: no journal (a crash is handled as fspl would), no header cache',
      quiet,
    });
    this.journal = this.state.journal;
    this.db = this.state.db;
  }

  /**
   * A watch runs for days: a database lost on the way (a full disk, a lock held too long, a
   * file damaged and moved away) is opened again before the next pass with room to write it,
   * then at most once per rescan interval until it can be, so that the journal is not off for
   * the rest of the run. What the run left 'running' meanwhile is then closed (recover.ts).
   */
  private async retakeState(): Promise<void> {
    // Opening only reads: a disk still full would fail at the first write. (statfs is cheap:
    // no try is spent on it.)
    if (this.db?.usable || lackOfSpace(this.queue) || Date.now() - this.retriedAt < (this.opts.rescanSeconds ?? 30) * 1000) return;
    this.retriedAt = Date.now();
    this.state?.close();
    this.attach(true);
    // Opened and read: a write (recovery's, or an empty one) proves the rest.
    if (!this.db?.usable || !this.db.canWrite()) return;
    this.reportUnreadable(await this.index.refresh());
    for (const name of recover(this.processing, this.index.all(), true)) this.index.forget(name);
    if (!this.db.usable) return;
    this.db.loud();
    this.journalRefusals();
    this.ctx.log.info(`state database ${this.db.path} can be used again: journal and header cache resumed`);
  }

  private async pass(): Promise<number> {
    try {
      return await (this.opts.orderBy === 'timestamp' ? this.byTimestamp() : this.bySequence());
    } finally {
      await this.opts.afterPass?.(this.db, this.ctx);
    }
  }

  private reportUnreadable(jobs: ScannedJob[]): void {
    for (const j of jobs) if (j.error) this.ctx.log.warn(`cannot read job file ${j.path}: ${j.error}; skipped`);
  }

  /**
   * Files below nextseq are never run; what they call for depends on whether their packet ran:
   * a copy of one that succeeded, or one the queue moved past after a failure, is routine
   * (INFO); one that never ran here may be data never applied (its sender restarted its
   * numbering), and is never called removable (WARN).
   */
  private reportStale(jobs: ScannedJob[], next: bigint): void {
    const { log } = this.ctx;
    // Only files below nextseq are stale: the others' identities (a header encoded and hashed
    // each, its params decoded from the cache) are not needed, and a large queue has thousands.
    const below = jobs.filter((j): j is Readable => readable(j) && j.header.seq < next);
    const files = below.map((j) => ({ name: j.name, path: j.path, header: j.header, packet: packetId(j.header) }));
    for (const f of staleJobs(files, next, this.journal)) {
      const what = `stale job file ${f.path}: seq ${f.header.seq} is below the queue's next seq ${next}; not run`;
      if (f.processed) log.info(`${what} (it succeeded at ${at(f.processed.endedAt ?? f.processed.startedAt)}; queue-clean removes it)`);
      else if (f.ran) log.info(`${what} (it ran at ${at(f.ran.endedAt ?? f.ran.startedAt)}, ${f.ran.outcome}, and the queue moved past it; queue-clean --stale removes it)`);
      else {
        const known = this.journal.active ? 'it never ran here' : 'whether it ran is not known (no journal)';
        log.warn(`${what}: ${known}; if its sender restarted its numbering, queue-set-next ${f.header.seq} runs it; queue-clean --stale --force removes it`);
      }
    }
  }

  /**
   * No job with the due seq: a gap, reported at INFO (the packet has not arrived; a transport
   * will bring it). But if files that could not be read might be that packet, waiting is not
   * enough: a person must give the key or decoder they need, or remove them.
   */
  private reportGap(next: bigint): void {
    const all = this.index.all();
    const later = all.filter((j): j is Readable => readable(j) && j.header.seq > next);
    const bad = this.index.unreadable();
    if (bad.length > 0) {
      const files = someOf(bad.map((j) => `${j.path} (${j.error})`));
      throw new QueueBlocked(`seq ${next} not found, and ${bad.length} job file(s) that cannot be read could hold it: ${files}; ${unreadableFix(bad)}`);
    }
    if (later.length > 0 && this.reportedGap !== next) {
      const lowest = later.reduce((m, j) => (j.header.seq < m ? j.header.seq : m), later[0]!.header.seq);
      this.ctx.log.info(`waiting for seq ${next}: it has not arrived; ${later.length} later job(s) queued, the lowest is seq ${lowest}`);
      this.reportedGap = next;
    }
    if (later.length === 0) this.ctx.log.debug(`no job with seq ${next}; nothing to do`);
  }

  /**
   * A file that does not prove the signature --require-signature asks for: unreadable to this
   * run until it changes (or, when --timeout cut its verification short, until a watch's next
   * rescan), and journaled, so that queue-status says why the job it claims does not run.
   * Returns whether it is news (a watch verifying the same file again each rescan says so once).
   */
  private refuse(job: Readable, why: Unverified, order: OrderBy | 'released'): boolean {
    const news = this.index.distrust(job, why.reason, !why.timedOut);
    const { seq, ctimeSecs, ctimeNanos } = job.header;
    const packet = packetId(job.header);
    const refusal = { ref: { seq, ctimeSecs, ctimeNanos, packet, file: job.name }, order, detail: this.index.errorOf(job.name)!, changedMs: job.identity?.ctimeMs ?? Date.now() };
    this.unjournaled.set(`${packet}/${job.name}`, refusal);
    this.journalRefusals();
    return news;
  }

  private journalRefusals(): void {
    for (const [key, r] of this.unjournaled) {
      if (!this.journal.active || !this.journal.recordRefusal(r.ref, r.order, r.detail, r.changedMs)) return;
      this.unjournaled.delete(key);
    }
  }

  /**
   * Files a person released from quarantine (queue-quarantine --release) run once more, out
   * of turn, before the due one: their seq is below nextseq, and nextseq is left alone. Returns
   * false when the run is to end (a stop, --maxjobs).
   */
  private async runReleased(next: bigint): Promise<boolean> {
    const released = this.journal.active ? this.journal.releasedFiles() : new Map<string, string>();
    if (released.size === 0) return true;
    for (const job of this.index.all().filter(readable)) {
      if (released.get(job.name) !== packetId(job.header) || job.header.seq >= next) continue;
      if (this.ctx.stop.stopping || this.spent) return false;
      this.ctx.log.info(`job ${job.header.seq} (${job.path}) was released from quarantine: running it once more, out of turn`);
      const end = await this.live(job, [job], 'released');
      if ('skip' in end) {
        if (end.skip === 'unverified') this.refuse(job, end, 'released');
        else this.index.forget(job.name);
        continue;
      }
      if (this.left !== undefined) this.left--;
      if (end.action !== undefined && end.action !== 'keep') this.index.forget(job.name);
      if (!end.effect.next) {
        if ('error' in end.effect) throw new JobFailed(end.effect.error);
        return false;
      }
    }
    return true;
  }

  private async bySequence(): Promise<number> {
    const { queue, opts, ctx, index } = this;
    let next = queue.nextseq.read();
    if (!(await this.runReleased(next))) return 0;
    this.reportStale(index.all(), next);
    while (!ctx.stop.stopping && !this.spent) {
      let candidates = index.withSeq(next);
      if (candidates.length === 0) {
        const fresh = await index.refresh();
        this.reportUnreadable(fresh);
        this.reportStale(fresh, next);
        candidates = index.withSeq(next);
        if (candidates.length === 0) {
          this.reportGap(next);
          return 0;
        }
      }
      if (candidates.length > 1 && opts.decode.keys.requiresSignature && (await identicalAsync(candidates.map((c) => c.path), () => ctx.stop.stopping)) === false) {
        // Anyone may drop a file claiming the due seq; only a signed one can make it ambiguous.
        for (const c of candidates) {
          const bad = await verifyFile(c, this.lookDecode, opts.timeoutSeconds);
          // A stop kills the decoders of this look at once: what they said judges nothing.
          if (ctx.stop.stopping) return 0;
          if (bad?.skip === 'vanished') index.forget(c.name);
          else if (bad) {
            const news = this.refuse(c, bad, 'sequence');
            ctx.log[news ? 'warn' : 'debug'](`job file ${c.path} claims seq ${next} but ${index.errorOf(c.name)}`);
          }
        }
        candidates = index.withSeq(next);
        if (candidates.length === 0) continue;
      }
      const paths = candidates.map((c) => c.path);
      if (candidates.length > 1) {
        const same = await identicalAsync(paths, () => ctx.stop.stopping);
        if (same === undefined) return 0;
        if (!same) throw new QueueBlocked(`seq ${next} is ambiguous: ${someOf(paths)} hold different packets; remove the wrong one`);
        ctx.log.warn(`seq ${next} arrived ${candidates.length} times with identical content (${someOf(paths)}); running it once`);
      }
      if (next === U64_MAX) {
        throw new FspoolError(`job ${next} is at the largest sequence number: nextseq could not advance past it; reset the queue with queue-set-next`);
      }
      const job = candidates[0]!;
      this.reportedGap = undefined;
      const end = await this.live(job, candidates, 'sequence');
      if ('skip' in end) {
        if (end.skip === 'vanished') {
          ctx.log.warn(`job ${next} (${job.path}) was removed or replaced before it could run; looking again`);
          index.forget(job.name);
        } else {
          const news = this.refuse(job, end, 'sequence');
          ctx.log[news ? 'warn' : 'debug'](`job file ${job.path} claims seq ${next} but ${index.errorOf(job.name)}; looking for another`);
        }
        continue;
      }
      if (this.left !== undefined) this.left--;
      // Files that stay (never-delete, leave) stay known, so they are not reported as new stale files.
      if (end.action !== undefined && end.action !== 'keep') for (const c of candidates) index.forget(c.name);
      if (!end.effect.next) {
        if ('error' in end.effect) throw new JobFailed(end.effect.error);
        return 0;
      }
      next += 1n;
    }
    return 0;
  }

  private async byTimestamp(): Promise<number> {
    const { queue, opts, ctx, index } = this;
    this.reportUnreadable(await index.refresh());
    const jobs = index
      .all()
      .filter(readable)
      .sort((a, b) => {
        const x = a.header;
        const y = b.header;
        if (x.ctimeSecs !== y.ctimeSecs) return x.ctimeSecs < y.ctimeSecs ? -1 : 1;
        if (x.ctimeNanos !== y.ctimeNanos) return x.ctimeNanos - y.ctimeNanos;
        if (x.seq !== y.seq) return x.seq < y.seq ? -1 : 1;
        return a.name < b.name ? -1 : 1;
      });
    for (const job of jobs) {
      if (ctx.stop.stopping || this.spent) break;
      const label = `job ${job.header.seq} (${job.path})`;
      // Without nextseq, the journal is what knows a packet ran: a copy delivered again is not
      // run again.
      const before = this.journal.active ? this.journal.lastSuccess(packetId(job.header)) : undefined;
      if (before) {
        const gone = !opts.neverDelete && removeJobFiles(queue, [job]);
        ctx.log.info(`${label} is a copy of a packet that ran successfully at ${at(before.endedAt ?? before.startedAt)} (journal); not run again${gone ? '; removed' : ''}`);
        index.forget(job.name);
        continue;
      }
      const end = await this.live(job, [job], 'timestamp');
      if ('skip' in end) {
        if (end.skip === 'vanished') ctx.log.warn(`${label} was removed or replaced before it could run`);
        else {
          const news = this.refuse(job, end, 'timestamp');
          ctx.log[news ? 'warn' : 'debug'](`job file ${job.path} ${index.errorOf(job.name)}`);
        }
        continue;
      }
      if (this.left !== undefined) this.left--;
      if (end.action !== undefined && end.action !== 'keep') index.forget(job.name);
      if (!end.effect.next) {
        if ('error' in end.effect) throw new JobFailed(end.effect.error);
        return 0;
      }
    }
    return 0;
  }

  /** lifeOfJob, with a job that could not start (no room to record it) blocking the queue. */
  private async live(job: Readable, copies: Readable[], order: OrderBy | 'released') {
    try {
      return await lifeOfJob(this.processing, job, copies, order);
    } catch (e) {
      if (e instanceof NotStarted) throw new QueueBlocked(e.message);
      throw e;
    }
  }

  /**
   * The due job's failures in a row and what is left of its pause, when its latest run failed
   * and stopped the queue; none otherwise. A failure in a row is a pass that stopped at it (a
   * run journaled with the action 'stop'), as a running watch counts them: not each of its
   * --retries.
   */
  private journaledBackoff(): { failures: number; pause: number } {
    const next = this.opts.orderBy === 'sequence' && this.journal.active ? this.queue.nextseq.readIfExists() : undefined;
    const runs = next === undefined ? [] : this.journal.history({ seq: next });
    const last = runs.find((r) => r.attempt > 0 && r.outcome !== 'running');
    if (!last || last.action !== 'stop' || !FAILURES.includes(last.outcome) || last.endedAt === null) return { failures: 0, pause: 0 };
    const failures = runs.filter((r) => r.packet === last.packet && r.action === 'stop' && FAILURES.includes(r.outcome)).length;
    return { failures, pause: Math.max(0, watchBackoff(failures, this.opts.backoffSeconds) - (Date.now() - last.endedAt) / 1000) };
  }

  /**
   * --watch: run a pass, then wait until a job file lands in jobs/ (inotify, through fs.watch),
   * the rescan interval passes (events can be missed: a full inotify queue, a network
   * filesystem), or a signal comes; and again. The lock is held throughout.
   *
   * A pass that stopped at a failing job (--on-error retry) is tried again after a pause that
   * doubles with each failure in a row (watchBackoff), whatever lands meanwhile; a queue that
   * cannot go on (an ambiguous seq, unreadable files, no room) is looked at again at the next
   * arrival or rescan. Either is reported once while it lasts, not at every look. Anything
   * else (the command cannot start) ends the watch.
   */
  private async watch(): Promise<number> {
    const { queue, opts, ctx } = this;
    let wake: (() => void) | undefined;
    let woken = false;
    const poke = () => {
      woken = true;
      wake?.();
    };
    // inotify follows a directory, not its name: jobs/ moved away and another put in its place
    // (or the same one back) is watched anew, as soon as the queue directory says so.
    const onJob = (name: string) => {
      if (JOB_NAME.test(name)) poke();
    };
    const identity = () => {
      try {
        const st = statSync(queue.jobsDir);
        return `${st.dev}:${st.ino}`;
      } catch {
        return undefined;
      }
    };
    let watchedAs = identity();
    let watcher = watchedAs === undefined ? undefined : watchDir(queue.jobsDir, onJob, ctx);
    const rewatch = () => {
      const now = identity();
      if (now === watchedAs) return;
      watcher?.close();
      watchedAs = now;
      watcher = now === undefined ? undefined : watchDir(queue.jobsDir, onJob, ctx);
    };
    const queueWatcher = watchDir(queue.dir, (name) => {
      if (name !== 'jobs') return;
      rewatch();
      poke();
    }, ctx);
    const noSignal = ctx.stop.onSignal(() => wake?.());
    // A watch started again (serve reloading a changed queue, a service restarted) keeps the
    // pause its failing due job was given: the job's failures, and when the last ended, are
    // journaled. Else each restart would run it again at once.
    const resumed = this.journaledBackoff();
    let failedInARow = resumed.failures;
    let resumePause = resumed.pause;
    let reported: string | undefined;
    try {
      for (;;) {
        woken = false;
        let pause = opts.rescanSeconds ?? 30;
        let backingOff = false;
        if (resumePause > 0) {
          pause = resumePause;
          resumePause = 0;
          backingOff = true;
          ctx.log.info(`the failing job is tried again in ${Math.ceil(pause)}s (failure ${failedInARow} in a row, journaled)`);
        } else {
          try {
            await this.retakeState();
            await this.pass();
            failedInARow = 0;
            reported = undefined;
          } catch (thrown) {
            const e = jobsDirGone(thrown, queue.jobsDir) ? new QueueBlocked(`${queue.jobsDir} is not there (moved, or being replaced); looking again when it is back`) : thrown;
            if (!(e instanceof JobFailed || e instanceof QueueBlocked)) throw e;
            if (e instanceof JobFailed) {
              failedInARow++;
              pause = watchBackoff(failedInARow, opts.backoffSeconds);
              backingOff = true;
            }
            if (e.message !== reported) {
              ctx.log.error(`${e.message}; watching on`);
              reported = e.message;
            }
            if (backingOff) ctx.log.info(`the failing job is tried again in ${pause}s (failure ${failedInARow} in a row)`);
          }
        }
        if (ctx.stop.stopping || this.spent) return 0;
        if (woken && !backingOff) continue; // something landed while the pass ran
        rewatch();
        ctx.log.debug(`watching ${queue.jobsDir} for new packets`);
        await new Promise<void>((resolve) => {
          const timer = after(pause, () => {
            // A rescan: files whose verification --timeout cut short are verified again.
            this.index.trustAgain();
            done();
          });
          function done() {
            timer.clear();
            resolve();
          }
          // While backing off, arrivals do not bring the failing job's next try forward.
          wake = () => {
            if (!backingOff || ctx.stop.stopping) done();
          };
        });
        wake = undefined;
        if (ctx.stop.stopping) return 0;
      }
    } finally {
      noSignal();
      watcher?.close();
      queueWatcher?.close();
    }
  }
}

/** fs.watch on a directory, or undefined (with a WARN) where it cannot be had: rescans still come. */
function watchDir(dir: string, onName: (name: string) => void, ctx: RunContext): { close(): void } | undefined {
  try {
    const w = watchFs(dir, (_event, name) => {
      if (name) onName(name.toString());
    });
    w.on('error', (e) => ctx.log.warn(`cannot watch ${dir} (${describe(e)}); relying on rescans`));
    return w;
  } catch (e) {
    ctx.log.warn(`cannot watch ${dir} (${describe(e)}); relying on rescans`);
    return undefined;
  }
}
