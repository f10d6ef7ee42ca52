// SIGINT, SIGTERM and SIGHUP sent to fspool (spec/processing.md, "Signals to fspool").
//
// Receivers and decoders run in process groups of their own, so a terminal's Ctrl-C reaches
// only fspool; fspool passes it on. A running receiver gets the signal itself (SIGKILL on a
// second one) and the job is counted as interrupted; helper children (decoders) are killed.
// Outside processing fspool then exits 128+N at once.
//
// The handlers are installed only once there is a child to pass signals on to, or a run to
// finish: a command busy in a blocking read (queue-write copying stdin) could not run them,
// and keeps Node's default, immediate death.
import { constants } from 'node:os';

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

interface Killable {
  kill(signal: NodeJS.Signals): void;
}

class Interrupts {
  /** The first signal received, if any. */
  signal: NodeJS.Signals | undefined;
  private readonly receivers = new Set<Killable>();
  private readonly helpers = new Set<Killable>();
  private readonly listeners = new Set<() => void>();
  private deferring = false;
  private installed = false;

  private install(): void {
    if (this.installed) return;
    this.installed = true;
    for (const s of FORWARDED) process.on(s, (sig) => this.receive(sig));
  }

  /** While processing, a signal ends the run after the running job instead of at once. */
  deferExit(on: boolean): void {
    if (on) this.install();
    this.deferring = on;
  }

  /** A receiver gets fspool's signals for as long as the returned function is not called. */
  forward(receiver: Killable): () => void {
    this.install();
    this.receivers.add(receiver);
    // A signal that came between the spawn and this registration must not be lost: the
    // receiver would run on while fspool waits for it.
    if (this.signal) receiver.kill(this.signal);
    return () => this.receivers.delete(receiver);
  }

  /** A helper (decoder) is killed on a signal. */
  guard(helper: Killable): () => void {
    this.install();
    this.helpers.add(helper);
    return () => this.helpers.delete(helper);
  }

  /** Call `fn` on the first signal (a watcher waiting for work wakes up); returns the undo. */
  onSignal(fn: () => void): () => void {
    this.install();
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** The shell's convention for death by a signal: 128 + its number. */
  get exitCode(): number {
    return this.signal ? 128 + constants.signals[this.signal] : 0;
  }

  private receive(sig: NodeJS.Signals): void {
    const again = this.signal !== undefined;
    this.signal ??= sig;
    for (const h of this.helpers) h.kill('SIGKILL');
    for (const r of this.receivers) r.kill(again ? 'SIGKILL' : sig);
    for (const l of this.listeners) l();
    // Processing finishes its bookkeeping for the interrupted job and returns 128+N itself.
    if (!this.deferring) process.exit(this.exitCode);
  }
}

export const interrupts = new Interrupts();
