// What one run of a processor carries down to everything it calls, instead of process-wide
// singletons: several runs can then go side by side in one process (`fspool serve`), each with
// its own log label, its own stop, its own crash points.
import { log as rootLog, type Logger } from '../log.js';
import { CrashPoints } from '../sys/crashPoint.js';
import { Stopper } from './stop.js';

export interface RunContext {
  log: Logger;
  stop: Stopper;
  crash: CrashPoints;
}

export function runContext(opts: { log?: Logger; stop?: Stopper; stopTimeoutSeconds?: number } = {}): RunContext {
  return {
    log: opts.log ?? rootLog,
    stop: opts.stop ?? new Stopper(opts.stopTimeoutSeconds),
    crash: new CrashPoints(),
  };
}
