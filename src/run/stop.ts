// Stopping a run (spec/processing.md, "Signals to fspool"). Receivers and decoders run in
// process groups of their own, so a terminal's Ctrl-C or systemd's SIGTERM reaches only
// fspool, which decides what becomes of the running job:
//
// - SIGTERM (systemd stopping a unit, a shutdown) asks for a graceful stop: no new job starts,
//   and the running one may finish for up to the stop timeout; then it is interrupted, and its
//   receiver's group killed after the grace period.
// - SIGINT and SIGHUP, or a second SIGTERM, interrupt at once: the running receiver's group
//   gets the signal (a further one: SIGKILL), helpers (decoders) are killed, and the job stays
//   queued.
//
// A Stopper belongs to one run; whoever owns the process's signals feeds it (listenForSignals
// for one queue-process, the supervisor for serve).
import type { Logger } from '../log.js';
import { after, type Timer } from '../sys/timer.js';
import { os } from '../sys/lazy.js';

export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

export interface Killable {
  kill(signal: NodeJS.Signals): void;
}

export class Stopper {
  /** The first signal received: no new job starts once it is set. */
  requested: StopSignal | undefined;
  /** The running job is being interrupted (its receiver got this signal): it stays queued. */
  interrupted: StopSignal | undefined;
  private readonly receivers = new Set<Killable>();
  private readonly helpers = new Set<Killable>();
  /** Helpers that work for no running job (decoders reading headers): killed by any stop. */
  private readonly lookers = new Set<Killable>();
  private readonly listeners = new Set<() => void>();
  private grace: Timer | undefined;
  private kill: Timer | undefined;

  /**
   * `stopTimeoutSeconds`: how long a SIGTERM lets the running job finish (0: as long as it
   * takes); undefined: SIGTERM interrupts at once like the others. When it has passed, the
   * receiver gets SIGTERM, then SIGKILL after `graceSeconds`: no second signal may come to
   * end a stop that no one watches (systemd, a shutdown).
   */
  constructor(
    private readonly stopTimeoutSeconds?: number,
    private readonly graceSeconds = 5,
    private readonly log?: Logger,
  ) {}

  /** No new job may start. */
  get stopping(): boolean {
    return this.requested !== undefined;
  }

  /** The shell's convention for a run ended by a signal: 128 + its number. */
  get exitCode(): number {
    return this.requested ? 128 + os().constants.signals[this.requested] : 0;
  }

  /** A signal for this run. */
  receive(sig: StopSignal): void {
    const first = this.requested === undefined;
    this.requested ??= sig;
    if (first && sig === 'SIGTERM' && this.stopTimeoutSeconds !== undefined) {
      if (this.stopTimeoutSeconds > 0) this.grace = after(this.stopTimeoutSeconds, () => this.timedOut());
      for (const h of this.lookers) h.kill('SIGKILL');
    } else {
      this.interrupt(sig);
    }
    for (const l of this.listeners) l();
  }

  private timedOut(): void {
    if (this.receivers.size) this.log?.warn(`the running job did not finish within the stop timeout (${this.stopTimeoutSeconds}s): interrupting it (SIGTERM, SIGKILL after ${this.graceSeconds}s)`);
    this.interrupt('SIGTERM');
    // A further interruption is SIGKILL to the receiver's group, as a second signal would be.
    this.kill = after(this.graceSeconds, () => this.interrupt('SIGTERM'));
  }

  private interrupt(sig: StopSignal): void {
    const again = this.interrupted !== undefined;
    this.interrupted ??= sig;
    this.grace?.clear();
    for (const h of [...this.helpers, ...this.lookers]) h.kill('SIGKILL');
    for (const r of this.receivers) r.kill(again ? 'SIGKILL' : sig);
  }

  /** A receiver gets the interruption for as long as the returned function is not called. */
  forward(receiver: Killable): () => void {
    this.receivers.add(receiver);
    // An interruption that came between the spawn and this registration must not be lost: the
    // receiver would run on while fspool waits for it.
    if (this.interrupted) receiver.kill(this.interrupted);
    return () => this.receivers.delete(receiver);
  }

  /** A helper (the running job's decoder) is killed when the run is interrupted. */
  guard(helper: Killable): () => void {
    this.helpers.add(helper);
    if (this.interrupted) helper.kill('SIGKILL');
    return () => this.helpers.delete(helper);
  }

  /** A helper that works for no running job (a decoder reading a header) is killed by any stop. */
  guardLook(helper: Killable): () => void {
    this.lookers.add(helper);
    if (this.requested) helper.kill('SIGKILL');
    return () => this.lookers.delete(helper);
  }

  /** Call `fn` whenever a signal comes (a watcher waiting for work wakes up); returns the undo. */
  onSignal(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** The run is over: no timer may outlive it. */
  dispose(): void {
    this.grace?.clear();
    this.kill?.clear();
  }
}

/**
 * Give the process's SIGINT, SIGTERM and SIGHUP to `to` until the returned function is called;
 * then they kill the process again, as by default. Installed only while there is a run to
 * finish: a command busy in a blocking read could not run the handlers.
 */
export function listenForSignals(to: (sig: StopSignal) => void): () => void {
  const handler = (sig: NodeJS.Signals) => to(sig as StopSignal);
  for (const s of STOP_SIGNALS) process.on(s, handler);
  return () => {
    for (const s of STOP_SIGNALS) process.off(s, handler);
  };
}
