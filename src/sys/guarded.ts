// Starting a child through fspool's spawner (src/sys/spawner.ts, native/fspool_spawner.c):
// byte-exact argv and environment, exec failures reported apart from exit statuses, a session
// and process group of its own, and a guard that SIGKILLs that group if fspool dies before
// releasing it. Receivers and decoders both start this way (spec/processing.md, "Starting a
// child", "If fspool dies").
import { fstatSync } from 'node:fs';
import { native, packageFile } from './native.js';
import { execRequest } from './exec.js';
import { killGroup } from './group.js';
import { Spawner } from './spawner.js';

export interface GuardedSpec {
  argv: Buffer[];
  /** Variables added to our environment. */
  env: Array<[string, Buffer]>;
  /** stdin, stdout, stderr: fds of ours to hand over ('inherit': our own 1 and 2). */
  stdio: [number, number | 'inherit', number | 'inherit'];
  /** The write end of the child's stdin pipe: the spawner holds a copy until `allowEof`. */
  stdinWriteEnd?: number;
  /** The spawner to start it with; by default the process's own. */
  spawner?: Spawner;
}

export interface GuardedExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Could not be started at all (not found, not executable, no memory), or its fate is lost. */
  startError?: string;
  /** The errno of the exec that failed (E2BIG: argv and environment too large). */
  startErrno?: number;
}

let processSpawner: Spawner | undefined;
/**
 * One spawner serves every run of the process (a helper process, started on first use): it
 * belongs to the process, as its fd table does.
 */
export function defaultSpawner(): Spawner {
  processSpawner ??= new Spawner(packageFile('build/Release/fspool-spawner'));
  return processSpawner;
}

/**
 * Start the process's spawner helper ahead of its first spawn (Spawner.warm). One that cannot
 * start (its binary missing, say) is left to that spawn to report.
 */
export function warmSpawner(): void {
  try {
    defaultSpawner().warm();
  } catch {
    /* the spawn says why */
  }
}

let stderrSettled = false;

/**
 * fd 2. Node creates process.stderr lazily, and its net.Socket destroy path reads it, so the
 * first socket we close (a decoder's stdout, a receiver's stdin pipe) would create it then,
 * setting O_NONBLOCK on fd 2 in the middle of a job, on the open file description the receiver
 * inherited. So create it before the first child starts, and make fd 2 blocking again; the
 * stream is never created twice. (The spawner clears O_NONBLOCK on a child's fds 0-2 too.)
 * A regular file or a character device other than a terminal (cron's log file, /dev/null)
 * needs none of this: Node writes to those synchronously and leaves their flags alone, so the
 * streams are not loaded for them.
 */
function settleStderr(): void {
  if (stderrSettled) return;
  stderrSettled = true;
  try {
    const st = fstatSync(2);
    if (st.isFile() || (st.isCharacterDevice() && !native().isatty(2))) return;
  } catch {
    /* no fd 2: creating the stream below is what Node would do anyway */
  }
  void process.stderr;
  native().clearNonblock(2);
}

let errnoNames: Map<number, [string, string]> | undefined;
/** `ENOENT`, `no such file or directory` for errno 2 (libuv's words, as Node's errors use). */
function describeErrno(errno: number): [string, string] {
  errnoNames ??= new Map([...process.getBuiltinModule('node:util').getSystemErrorMap()].map(([n, v]) => [-n, v]));
  return errnoNames.get(errno) ?? [`errno ${errno}`, `error ${errno}`];
}

export class GuardedChild {
  /** Set once the child has exec'd; undefined if it could not start. */
  readonly pid: number | undefined;
  /** Settles once the child has exited, or at once if it could not start. */
  readonly exited: Promise<GuardedExit>;
  private readonly spawner: Spawner;
  private released = false;

  /** Throws ExecError if argv or env cannot be exec'd (a NUL byte). */
  constructor(spec: GuardedSpec) {
    const request = execRequest(spec.argv, spec.env, spec.stdinWriteEnd === undefined ? 3 : 4);
    settleStderr();
    this.spawner = spec.spawner ?? defaultSpawner();
    const [stdin, stdout, stderr] = spec.stdio;
    const fds = [stdin, stdout === 'inherit' ? 1 : stdout, stderr === 'inherit' ? 2 : stderr];
    if (spec.stdinWriteEnd !== undefined) fds.push(spec.stdinWriteEnd);
    const started = this.spawner.spawn(request, fds);
    if ('errno' in started) {
      const [name, text] = describeErrno(started.errno);
      this.released = true;
      this.exited = Promise.resolve({ code: null, signal: null, startError: `${spec.argv[0]!.toString('utf8')}: ${text} (${name})`, startErrno: started.errno });
      return;
    }
    this.pid = started.pid;
    this.exited = started.exited.then((e) => (e.lost ? { code: null, signal: null, startError: e.lost } : { code: e.code, signal: e.signal }));
  }

  /** Signal the child's whole process group. */
  kill(signal: NodeJS.Signals): void {
    if (this.pid) killGroup(this.pid, signal);
  }

  /** The stdin payload is whole: the spawner closes its copy of the pipe's write end. */
  allowEof(): void {
    if (this.pid && !this.released) this.spawner.allowEof(this.pid);
  }

  /**
   * The child's work is over (it exited, or was killed and has exited): the spawner reaps it
   * and stops guarding it. Until then its zombie keeps its pid, and its group id, from reuse.
   */
  release(): void {
    if (this.released || !this.pid) return;
    this.released = true;
    this.spawner.release(this.pid);
  }
}
