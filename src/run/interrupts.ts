// SIGINT, SIGTERM and SIGHUP sent to fspool while it processes: forwarded to the running
// receiver's process group (it is in a group of its own, so the terminal's signal would not
// reach it), and the run stops after that job without counting it as done.
import { constants } from 'node:os';
import type { Receiver } from './receiver.js';

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export class Interrupts {
  /** The first signal received, if any. */
  signal: NodeJS.Signals | undefined;
  current: Receiver | undefined;
  private readonly handler = (sig: NodeJS.Signals) => {
    const again = this.signal !== undefined;
    this.signal ??= sig;
    // A second signal means "now": no more grace for the receiver.
    this.current?.kill(again ? 'SIGKILL' : sig);
  };

  install(): this {
    for (const s of FORWARDED) process.on(s, this.handler);
    return this;
  }

  uninstall(): void {
    for (const s of FORWARDED) process.off(s, this.handler);
  }

  /** The shell's convention for death by a signal: 128 + its number. */
  get exitCode(): number {
    return this.signal ? 128 + constants.signals[this.signal] : 0;
  }
}
