// One queue under serve: a QueueProcessor watching it, with a context of its own (its log
// label, its Stopper, its crash points) and hooks that make each run of a receiver wait for a
// slot (slots.ts) and report how it ended (metrics). Around the processor, what a supervisor
// adds (spec/serve.md):
//
// - a reload that changes or removes the queue ends its processor before its next job (a
//   running job is never interrupted); a changed queue then gets a new processor with the new
//   settings;
// - while another processor (a manual queue-process, fspl) holds the queue, it waits for it,
//   and takes it once it is free;
// - an error of the processor's own (the queue directory missing, not writable) is reported
//   once, and the queue is tried again after a pause that doubles: other queues go on;
// - SIGTERM and SIGINT go to the processor's Stopper, as queue-process's do.
import { describe, FspoolError } from '../errors.js';
import { labelled, type Logger } from '../log.js';
import { lockHolder } from '../queue/lockHolder.js';
import { Queue } from '../queue/queue.js';
import { runContext, type RunContext, type RunHooks, type RunReport } from '../run/context.js';
import { QueueProcessor } from '../run/processor.js';
import type { StopSignal } from '../run/stop.js';
import { after } from '../sys/timer.js';
import type { QueueSettings } from './settings.js';
import type { Slots } from './slots.js';

/** The processor ends before this job: a reload changed or removed its queue, or a stop came. */
class NotNow extends FspoolError {
  override name = 'NotNow';
}

/** The longest pause before a queue whose processor failed is tried again. */
const TROUBLE_PAUSE_MAX = 300;

export interface RunnerEnv {
  slots: Slots;
  /** A run of a receiver of this queue ended. */
  ran?(queue: string, report: RunReport): void;
}

/** One processor's run, and where it stands. */
interface Run {
  ctx: RunContext;
  /** A receiver runs (its slot is taken). */
  running: boolean;
  /** Waiting for a slot: aborted to give up waiting. */
  waiting: AbortController | undefined;
  /** To end before its next job (a reload). */
  retiring: boolean;
}

export class QueueRunner {
  readonly log: Logger;
  /** The settings the queue is to run with next; null once it is removed. */
  private target: QueueSettings | null;
  private signal: StopSignal | undefined;
  private run: Run | undefined;
  /** Ends a pause between two processors (a stop, a reload). */
  private wake: (() => void) | undefined;
  /** The runner has ended: its queue was removed, or serve stopped. */
  finished = false;
  /** Errors of its processor in a row, and the one last reported (reported once while it lasts). */
  private troubles = 0;
  private reported: string | undefined;
  readonly done: Promise<void>;

  constructor(
    readonly name: string,
    settings: QueueSettings,
    private readonly env: RunnerEnv,
  ) {
    this.target = settings;
    this.log = labelled(name);
    this.done = this.loop();
  }

  /** The settings it runs with (or will run with once its running job is over). */
  get settings(): QueueSettings | null {
    return this.target;
  }

  /** A reload: new settings, or null (the queue was removed); they apply from its next job. */
  configure(next: QueueSettings | null): void {
    if (next?.fingerprint === this.target?.fingerprint) return;
    this.target = next;
    this.wake?.();
    const run = this.run;
    if (!run) return;
    run.retiring = true;
    run.waiting?.abort();
    if (!run.running) this.endIdle(run);
  }

  /** SIGTERM or SIGINT for this queue: given to its processor's Stopper, as queue-process does. */
  stop(sig: StopSignal): void {
    this.signal ??= sig;
    this.wake?.();
    this.run?.ctx.stop.receive(sig);
  }

  /**
   * A retiring processor with no receiver running ends now: through its Stopper, as a SIGHUP
   * would end queue-process (what the supervisor got), which only ends waits, scans and
   * retry pauses at this point. Later in this turn of the event loop, so that a job whose
   * run just ended is committed first.
   */
  private endIdle(run: Run): void {
    setImmediate(() => {
      if (this.run === run && !run.running && !run.ctx.stop.stopping) run.ctx.stop.receive('SIGHUP');
    });
  }

  private hooks(run: Run): RunHooks {
    return {
      beforeRun: async () => {
        if (run.retiring || run.ctx.stop.stopping) throw new NotNow('the processor ends before this job');
        const waiting = new AbortController();
        run.waiting = waiting;
        const unlisten = run.ctx.stop.onSignal(() => waiting.abort());
        let release: () => void;
        try {
          release = await this.env.slots.acquire(waiting.signal);
        } catch {
          throw new NotNow('the processor ends before this job');
        } finally {
          unlisten();
          run.waiting = undefined;
        }
        run.running = true;
        // The processor works: a trouble reported before is over.
        this.troubles = 0;
        this.reported = undefined;
        return (report) => {
          run.running = false;
          release();
          if (report) this.env.ran?.(this.name, report);
          if (run.retiring) this.endIdle(run);
        };
      },
    };
  }

  private async loop(): Promise<void> {
    let started = false;
    while (this.signal === undefined && this.target !== null) {
      const settings = this.target;
      const ctx = runContext({ log: this.log, stopTimeoutSeconds: settings.stopTimeoutSeconds, graceSeconds: settings.opts.graceSeconds });
      const run: Run = { ctx, running: false, waiting: undefined, retiring: false };
      ctx.hooks = this.hooks(run);
      this.run = run;
      this.log.debug(`${started ? 'processing again' : 'processing'} ${settings.dir}`);
      started = true;
      const queue = new Queue(settings.dir);
      let error: unknown;
      try {
        // The lock is waited for a rescan interval at a time: a stop or reload ends the wait.
        const opts = { ...settings.opts, watch: true, maxJobs: undefined, skipIfLocked: false, waitLockSeconds: settings.opts.rescanSeconds ?? 30 };
        await new QueueProcessor(queue, opts, ctx).run();
      } catch (e) {
        if (!(e instanceof NotNow)) error = e;
      } finally {
        ctx.stop.dispose();
        this.run = undefined;
      }
      if (this.signal !== undefined || this.target === null) break;
      if (run.retiring) {
        this.log.debug('processing again, with the new settings');
        this.troubles = 0;
        this.reported = undefined;
        continue;
      }
      let pause: number;
      let message: string;
      if (error instanceof FspoolError && /is locked by another process/.test(error.message)) {
        const pid = lockHolder(queue.nextseq.lockPath).pid;
        message =
          pid === process.pid
            ? 'the queue is still held by its processor under an earlier name or settings, until its running job is over; it is taken then'
            : `another processor${pid === undefined ? '' : ` (pid ${pid})`} holds the queue; it is taken once it is free`;
        pause = 0;
      } else {
        this.troubles++;
        pause = Math.min(TROUBLE_PAUSE_MAX, (settings.opts.rescanSeconds ?? 30) * 2 ** (this.troubles - 1));
        message = error === undefined ? 'the processor ended' : describe(error);
      }
      if (message !== this.reported) {
        if (pause === 0) this.log.warn(message);
        else this.log.error(`${message}; trying again in ${pause}s`);
        this.reported = message;
      } else if (pause > 0) this.log.debug(`${message}; trying again in ${pause}s`);
      if (pause > 0) await this.pause(pause);
    }
    this.finished = true;
  }

  private pause(seconds: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = after(seconds, done);
      function done() {
        timer.clear();
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }
}
