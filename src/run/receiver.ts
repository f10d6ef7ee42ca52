// The receiver: the processor's command, run for one job.
//
// What it gets (spec/processing.md, "The receiver's world"):
// - its own session and process group, so timeouts and forwarded signals reach its children;
// - stdin: the job file itself at the payload offset (zero-copy), a pipe of ours, or
//   /dev/null; always blocking, since the spawner clears O_NONBLOCK on a child's fds 0-2;
// - signals at their defaults, none blocked (fspl 1.2.2 leaves SIGPIPE ignored);
// - no other fd of ours: only its three stdio fds are passed to the spawner;
// - a guard (src/sys/guarded.ts) that kills its group if fspool dies mid-job, before the last
//   write end of its stdin pipe closes, so a truncated payload never ends in a clean EOF.
import { closeSync, constants, openSync } from 'node:fs';
import type { Socket } from 'node:net';
import { net } from '../sys/lazy.js';
import { native } from '../sys/native.js';
import { after, type Timer } from '../sys/timer.js';
import { GuardedChild } from '../sys/guarded.js';
import type { Spawner } from '../sys/spawner.js';

/**
 * The receiver's stdin pipe is made this large while it is new and empty: the decode worker
 * writes 256-512 KiB of plaintext at a time, and with Linux's default of 64 KiB each write
 * would wait for the receiver several times; this holds a few writes while the receiver drains.
 */
const STDIN_PIPE_BYTES = 1 << 20;

export interface ReceiverSpec {
  /** Command and arguments as bytes: job params need not be UTF-8. */
  argv: Buffer[];
  /** Variables added to our own environment (the FSPL_* set). */
  env: Array<[string, Buffer]>;
  /** An fd to hand over as stdin, or 'pipe' for a fresh pipe whose write end we keep. */
  stdin: number | 'pipe';
  stdout: number | 'inherit';
  stderr: number | 'inherit';
  /** Wall-clock limit in seconds; then SIGTERM to the group, SIGKILL after `graceSeconds`. */
  timeoutSeconds?: number;
  graceSeconds: number;
  /** The spawner to start it with; by default the process's own. */
  spawner?: Spawner;
}

export interface ReceiverExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** The command could not be started at all (not found, not executable). */
  startError?: string;
  /** The errno of the exec that failed, when known (E2BIG: argv and environment too large). */
  startErrno?: number;
}

export class Receiver {
  readonly done: Promise<ReceiverExit>;
  /** Our end of the receiver's stdin pipe, when stdin is 'pipe'. */
  readonly stdin: Socket | undefined;
  /** The fd of our end of that pipe, which `stdin` wraps. */
  readonly stdinFd: number | undefined;
  private readonly proc: GuardedChild;
  /** A read end of the stdin pipe, held from the end of input until the receiver exits. */
  private probe: number | undefined;
  private unread = -1;
  private exited = false;
  private timedOut = false;
  private timers: Timer[] = [];

  /** Throws ExecError if argv or env cannot be exec'd. */
  constructor(private readonly spec: ReceiverSpec) {
    let pipeRead: number | undefined;
    let pipeWrite: number | undefined;
    if (spec.stdin === 'pipe') [pipeRead, pipeWrite] = native().pipe(STDIN_PIPE_BYTES);
    try {
      this.proc = new GuardedChild({
        argv: spec.argv,
        env: spec.env,
        stdio: [pipeRead ?? (spec.stdin as number), spec.stdout, spec.stderr],
        stdinWriteEnd: pipeWrite,
        spawner: spec.spawner,
      });
    } catch (e) {
      if (pipeWrite !== undefined) closeSync(pipeWrite);
      throw e;
    } finally {
      // The receiver has its copy of the read end; ours must go, or EOF and EPIPE never come.
      if (pipeRead !== undefined) closeSync(pipeRead);
    }
    this.stdinFd = pipeWrite;
    if (pipeWrite !== undefined) {
      // Non-blocking on our end only: the two ends of a pipe are separate open file
      // descriptions, so the receiver's end stays blocking.
      this.stdin = new (net().Socket)({ fd: pipeWrite, readable: false, writable: true });
      this.stdin.on('error', () => {
        /* EPIPE when the receiver stops reading: seen by the delivery as a broken pipe */
      });
    }
    this.done = this.proc.exited.then((e) => {
      this.exited = true;
      this.clearTimers();
      this.measureUnread();
      // Whatever a timed-out receiver left behind in its group goes with it.
      if (this.timedOut) this.kill('SIGKILL');
      return { ...e, timedOut: this.timedOut && !e.startError };
    });
    if (spec.timeoutSeconds !== undefined && this.proc.pid !== undefined) {
      this.timers.push(after(spec.timeoutSeconds, () => this.timeout()));
    }
  }

  /** Signal the receiver's whole process group. */
  kill(signal: NodeJS.Signals): void {
    this.proc.kill(signal);
  }

  /** The payload is whole and verified: let the receiver see EOF. */
  endInput(): void {
    if (this.stdinFd !== undefined) {
      // A whole payload can fit in the pipe, so a receiver that exits without reading it all
      // may never have made a write fail: what is left in the pipe when it exits says so. A
      // second read end keeps the pipe's contents countable once the receiver's is gone. It is
      // held only from here, when the payload is all written (or in our socket's buffer), to
      // the receiver's exit, when it is closed: a write still pending then fails with EPIPE,
      // as it would have. Without /proc (or with no fd to spare) how much was left is unknown.
      try {
        this.probe = openSync(`/proc/self/fd/${this.stdinFd}`, constants.O_RDONLY | constants.O_NONBLOCK);
      } catch {
        this.probe = undefined;
      }
      if (this.exited) this.measureUnread();
    }
    this.proc.allowEof();
    this.stdin?.end();
  }

  /**
   * Payload bytes the receiver left in its stdin pipe when it exited (with what our end had
   * yet to write), once it has exited after `endInput`; -1 when not known.
   */
  get unreadInput(): number {
    return this.unread;
  }

  /** The job is over: the spawner reaps it and stops guarding it. Call after `done`, always. */
  release(): void {
    this.proc.release();
  }

  private timeout(): void {
    this.timedOut = true;
    this.kill('SIGTERM');
    this.timers.push(
      after(this.spec.graceSeconds, () => {
        if (!this.exited) this.kill('SIGKILL');
      }),
    );
  }

  private measureUnread(): void {
    if (this.probe === undefined) return;
    try {
      this.unread = native().pending(this.probe) + (this.stdin?.writableLength ?? 0);
    } finally {
      // Closed at once: should our end still have bytes to write, the write fails (EPIPE)
      // rather than waiting on a reader that never reads.
      closeSync(this.probe);
      this.probe = undefined;
    }
  }

  private clearTimers(): void {
    for (const t of this.timers) t.clear();
    this.timers = [];
  }
}
