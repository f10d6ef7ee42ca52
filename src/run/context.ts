// What one run of a processor carries down to everything it calls, instead of process-wide
// singletons: several runs can then go side by side in one process (`fspool serve`), each with
// its own log label, its own stop, its own crash points.
import { log as rootLog, type Logger } from '../log.js';
import type { RunKind } from '../queue/journal.js';
import { CrashPoints } from '../sys/crashPoint.js';
import { Stopper } from './stop.js';

export interface RunContext {
  log: Logger;
  stop: Stopper;
  crash: CrashPoints;
  /** Whoever runs several processors side by side (serve): when receivers may start, and how their runs ended. */
  hooks?: RunHooks;
}

/** How one run of a receiver (one attempt of a job) ended, as its journal row says. */
export interface RunReport {
  outcome: RunKind;
  seconds: number;
  /** Payload bytes the receiver took. */
  bytes: number;
}

export interface RunHooks {
  /**
   * Called before each run of a receiver (every attempt of a job), before its journal row is
   * written: the run starts once this resolves, and the function it resolves to is called when
   * the run is over, with how it ended (undefined: the job was not run after all). A rejection
   * keeps the job from starting: the job is left as it was and the run ends with that error.
   */
  beforeRun(job: { seq: bigint; file: string }): Promise<(ran: RunReport | undefined) => void>;
}

export function runContext(opts: { log?: Logger; stop?: Stopper; stopTimeoutSeconds?: number; graceSeconds?: number; hooks?: RunHooks } = {}): RunContext {
  const log = opts.log ?? rootLog;
  return {
    log,
    stop: opts.stop ?? new Stopper(opts.stopTimeoutSeconds, opts.graceSeconds, log),
    crash: new CrashPoints(),
    hooks: opts.hooks,
  };
}
