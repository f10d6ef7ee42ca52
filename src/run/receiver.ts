// The receiver: the processor's command, run for one job.
//
// What it gets (spec/processing.md, "The receiver's world"):
// - its own process group (spawned detached), so timeouts and forwarded signals reach its
//   children too;
// - stdin: the job file itself at the payload offset (zero-copy), a pipe of ours, or
//   /dev/null; always blocking, since libuv clears O_NONBLOCK on a child's fds 0-2;
// - signals at their defaults (libuv resets them; fspl 1.2.2 leaves SIGPIPE ignored);
// - no other fd of ours: Node opens everything O_CLOEXEC, and our pipes are made O_CLOEXEC.
//
// It is started through native/fspool_exec.c, which execs it with byte-exact argv and env and
// leaves a guardian behind: if fspool dies mid-job, the guardian kills the receiver's group
// before the last write end of its stdin pipe closes, so a truncated payload never ends in a
// clean EOF (spec/processing.md, "If fspool dies").
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { native, packageFile } from '../sys/native.js';
import { execRequest } from './exec.js';
import { killGroup } from './group.js';

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
}

export interface ReceiverExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** The command could not be started at all (not found, not executable). */
  startError?: string;
}

export class Receiver {
  readonly done: Promise<ReceiverExit>;
  /** Our end of the receiver's stdin pipe, when stdin is 'pipe'. */
  readonly stdin: Socket | undefined;
  private child: ChildProcess;
  /** Our end of the guardian's lifeline; closing it without 'X' makes the guardian kill. */
  private lifeline: number | undefined;
  private exited = false;
  private timedOut = false;
  private timers: NodeJS.Timeout[] = [];

  /** Throws ExecError if argv or env cannot be exec'd. */
  constructor(private readonly spec: ReceiverSpec) {
    const request = execRequest(spec.argv, spec.env, true);
    const sys = native();
    const [lifeRead, lifeWrite] = sys.pipe();
    this.lifeline = lifeWrite;
    let stdinFd: number;
    let pipeRead: number | undefined;
    let pipeWrite: number | undefined;
    if (spec.stdin === 'pipe') {
      [pipeRead, pipeWrite] = sys.pipe();
      stdinFd = pipeRead;
    } else {
      stdinFd = spec.stdin;
    }
    const extra: Array<'pipe' | number> = ['pipe', lifeRead];
    if (pipeWrite !== undefined) extra.push(pipeWrite);
    this.child = spawn(packageFile('build/Release/fspool-exec'), [], {
      stdio: [stdinFd, spec.stdout, spec.stderr, ...extra],
      detached: true,
      argv0: spec.argv[0]!.toString('utf8'),
    });
    // The child has its copies now; the read ends must go from here, or EOF and EPIPE never come.
    closeSync(lifeRead);
    if (pipeRead !== undefined) closeSync(pipeRead);
    if (pipeWrite !== undefined) {
      // Non-blocking on our end only: the two ends of a pipe are separate open file
      // descriptions, so the receiver's end stays blocking.
      this.stdin = new Socket({ fd: pipeWrite, readable: false, writable: true });
      this.stdin.on('error', () => {
        /* EPIPE when the receiver stops reading: seen by the delivery as a broken pipe */
      });
    }

    // fd 3: the request goes in; an exec failure comes back; a successful exec closes it.
    const control = this.child.stdio[3] as (Readable & Writable) | null;
    const startError = new Promise<string | undefined>((resolve) => {
      if (!control) return resolve('cannot talk to fspool-exec');
      const said: Buffer[] = [];
      control.on('data', (b: Buffer) => said.push(b));
      control.on('error', () => {
        /* the helper died: its exit status tells */
      });
      control.on('close', () => resolve(said.length ? Buffer.concat(said).toString() : undefined));
      control.end(request);
    });
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
      this.child.once('error', (error) => resolve({ code: null, signal: null, error }));
      this.child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    this.done = Promise.all([exit, startError]).then(([e, notStarted]) => {
      this.exited = true;
      this.clearTimers();
      // Whatever a timed-out receiver left behind in its group goes with it.
      if (this.timedOut) this.kill('SIGKILL');
      const failed = e.error?.message ?? notStarted;
      if (failed) return { code: e.code, signal: e.signal, timedOut: false, startError: failed };
      return { code: e.code, signal: e.signal, timedOut: this.timedOut };
    });
    if (spec.timeoutSeconds !== undefined && this.child.pid) {
      this.timers.push(setTimeout(() => this.timeout(), spec.timeoutSeconds * 1000));
    }
  }

  /** The payload is whole and verified: let the receiver see EOF. */
  endInput(): void {
    this.tellGuardian('E');
    this.stdin?.end();
  }

  /**
   * The job is over (the receiver exited, or was killed and reaped): dismiss the guardian.
   * Must be called once in every outcome.
   */
  release(): void {
    this.tellGuardian('X');
    if (this.lifeline !== undefined) closeSync(this.lifeline);
    this.lifeline = undefined;
  }

  private tellGuardian(what: 'E' | 'X'): void {
    if (this.lifeline === undefined) return;
    try {
      writeSync(this.lifeline, what);
    } catch {
      /* the guardian is gone (killed by someone): nothing left to tell */
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Signal the receiver's whole process group. */
  kill(signal: NodeJS.Signals): void {
    if (this.child.pid) killGroup(this.child.pid, signal);
  }

  /** SIGTERM now, SIGKILL after the grace period if it is still there. */
  terminate(): void {
    this.kill('SIGTERM');
    const t = setTimeout(() => {
      if (!this.exited) this.kill('SIGKILL');
    }, this.spec.graceSeconds * 1000);
    this.timers.push(t);
  }

  private timeout(): void {
    this.timedOut = true;
    this.terminate();
  }

  private clearTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
  }
}
