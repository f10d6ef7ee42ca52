// Starting a child through fspool-exec (native/fspool_exec.c): byte-exact argv and
// environment, exec failures reported apart from exit statuses, a process group of its own,
// and a guardian that SIGKILLs that group if fspool dies before dismissing it. Receivers and
// decoders both start this way (spec/processing.md, "If fspool dies").
import type { ChildProcess, IOType } from 'node:child_process';
import { closeSync, writeSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { childProcess } from '../sys/lazy.js';
import { native, packageFile } from '../sys/native.js';
import { execRequest } from './exec.js';
import { killGroup } from './group.js';

export interface GuardedSpec {
  argv: Buffer[];
  /** Variables added to our environment. */
  env: Array<[string, Buffer]>;
  stdio: [number | IOType, number | IOType, number | IOType];
  /** The write end of the child's stdin pipe: the guardian holds a copy until told 'E'. */
  stdinWriteEnd?: number;
}

export interface GuardedExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Could not be started at all (not found, not executable, no memory). */
  startError?: string;
  /** The errno of the failed exec, when it came that far. */
  startErrno?: number;
}

/**
 * Guardians are reparented to init once fspool-exec has execed. When fspool *is* init (PID 1 of
 * a container started without one), nobody else reaps them: fspool does, by pid, for guardians
 * it has dismissed. Only then: a guardian is then fspool's child, and a zombie's pid cannot be
 * reused, so reaping by pid can never take another child's exit status from libuv.
 */
const unreaped = new Set<number>();
function reapGuardians(): void {
  for (const pid of unreaped) if (native().reap(pid)) unreaped.delete(pid);
}

let stderrSettled = false;

/**
 * fd 2. Node creates process.stderr lazily, and its net.Socket destroy path reads it, so the
 * first socket we close (fd 3 of fspool-exec, a decoder's stdout) would create it then, setting
 * O_NONBLOCK on fd 2 in the middle of a job, on the open file description the receiver
 * inherited. So create it before the first child starts, and make fd 2 blocking again; the
 * stream is never created twice.
 */
function settleStderr(): void {
  if (stderrSettled) return;
  stderrSettled = true;
  void process.stderr;
  native().clearNonblock(2);
}

export class GuardedChild {
  readonly child: ChildProcess;
  /** Settles once the child has exited and we know whether its exec succeeded. */
  readonly exited: Promise<GuardedExit>;
  private lifeline: number | undefined;
  private guardianPid: number | undefined;

  /** Throws ExecError if argv or env cannot be exec'd (a NUL byte). */
  constructor(spec: GuardedSpec) {
    const request = execRequest(spec.argv, spec.env, true);
    settleStderr();
    reapGuardians(); // the last job's guardian has had time to exit
    const [lifeRead, lifeWrite] = native().pipe();
    this.lifeline = lifeWrite;
    const extra: Array<IOType | number> = ['pipe', lifeRead];
    if (spec.stdinWriteEnd !== undefined) extra.push(spec.stdinWriteEnd);
    try {
      this.child = childProcess().spawn(packageFile('build/Release/fspool-exec'), [], {
        stdio: [...spec.stdio, ...extra],
        detached: true,
        argv0: spec.argv[0]!.toString('utf8'),
      });
    } finally {
      // The child has its copy of the lifeline's read end (or never will): ours must go, or
      // the guardian would never see EOF.
      closeSync(lifeRead);
    }

    // fd 3: the request goes in; the guardian's pid comes back (marked \x01), and an exec
    // failure as text; a successful exec closes it.
    const control = this.child.stdio[3] as (Readable & Writable) | null;
    let errno: number | undefined;
    const notStarted = new Promise<string | undefined>((resolve) => {
      if (!control) return resolve('cannot talk to fspool-exec');
      const said: Buffer[] = [];
      control.on('data', (b: Buffer) => said.push(b));
      control.on('error', () => {
        /* the helper died: its exit status tells */
      });
      control.on('close', () => {
        let text = Buffer.concat(said).toString('utf8');
        text = text.replace(/\x01(\d+)\n/g, (_m, pid: string) => {
          this.guardianPid = Number(pid);
          return '';
        });
        text = text.replace(/\x02(\d+)\n/, (_m, n: string) => {
          errno = Number(n);
          return '';
        });
        resolve(text.trim() || undefined);
      });
      control.end(request);
    });
    const exit = new Promise<GuardedExit>((resolve) => {
      this.child.once('error', (error) => resolve({ code: null, signal: null, startError: error.message }));
      this.child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    this.exited = Promise.all([exit, notStarted]).then(([e, failed]) => (failed && !e.startError ? { ...e, startError: failed, startErrno: errno } : e));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Signal the child's whole process group. */
  kill(signal: NodeJS.Signals): void {
    if (this.child.pid) killGroup(this.child.pid, signal);
  }

  /** The stdin payload is whole: the guardian closes its copy of the pipe's write end. */
  allowEof(): void {
    this.tell('E');
  }

  /** The child's work is over (it exited, or was killed and reaped): dismiss the guardian. */
  release(): void {
    this.tell('X');
    if (this.lifeline !== undefined) closeSync(this.lifeline);
    this.lifeline = undefined;
    if (process.pid === 1 && this.guardianPid !== undefined) unreaped.add(this.guardianPid);
    reapGuardians();
  }

  private tell(what: 'E' | 'X'): void {
    if (this.lifeline === undefined) return;
    try {
      writeSync(this.lifeline, what);
    } catch {
      /* the guardian is gone (killed by someone): nothing left to tell */
    }
  }
}
