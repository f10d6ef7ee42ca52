// The receiver: the processor's command, run for one job.
//
// What it gets (spec/processing.md, "The receiver's world"):
// - its own process group (spawned detached), so timeouts and forwarded signals reach its
//   children too;
// - stdin: the job file itself at the payload offset (zero-copy), a pipe of ours, or
//   /dev/null; always blocking, since libuv clears O_NONBLOCK on a child's fds 0-2;
// - signals at their defaults (libuv resets them; fspl 1.2.2 leaves SIGPIPE ignored);
// - no other fd of ours: Node opens everything O_CLOEXEC, and our pipes are made O_CLOEXEC.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { native } from '../sys/native.js';
import { killGroup } from './group.js';
import { type ExecPlan, planExec } from './exec.js';

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
  private exited = false;
  private timedOut = false;
  private timers: NodeJS.Timeout[] = [];

  constructor(private readonly spec: ReceiverSpec) {
    let pipeRead: number | undefined;
    let stdinFd: number;
    if (spec.stdin === 'pipe') {
      const [r, w] = native().pipe();
      pipeRead = r;
      stdinFd = r;
      // Non-blocking on our end only: the two ends of a pipe are separate open file
      // descriptions, so the receiver's end stays blocking.
      this.stdin = new Socket({ fd: w, readable: false, writable: true });
      this.stdin.on('error', () => {
        /* EPIPE when the receiver stops reading: seen by the delivery as a broken pipe */
      });
    } else {
      stdinFd = spec.stdin;
    }
    const plan: ExecPlan = planExec(spec.argv, spec.env);
    this.child = spawn(plan.file, plan.args, {
      stdio: [stdinFd, spec.stdout, spec.stderr, ...plan.extraStdio],
      env: plan.env,
      detached: true,
      argv0: plan.argv0,
    });
    plan.afterSpawn(this.child);
    // The receiver has its copy of the read end; ours must go, or EOF and EPIPE never come.
    if (pipeRead !== undefined) closeSync(pipeRead);

    this.done = new Promise<ReceiverExit>((resolve) => {
      this.child.once('error', (e) => {
        this.exited = true;
        this.clearTimers();
        resolve({ code: null, signal: null, timedOut: false, startError: e.message });
      });
      this.child.once('exit', (code, signal) => {
        this.exited = true;
        this.clearTimers();
        // Whatever a timed-out receiver left behind in its group goes with it.
        if (this.timedOut) this.kill('SIGKILL');
        resolve({ code, signal, timedOut: this.timedOut });
      });
    });
    if (spec.timeoutSeconds !== undefined && this.child.pid) {
      this.timers.push(setTimeout(() => this.timeout(), spec.timeoutSeconds * 1000));
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
