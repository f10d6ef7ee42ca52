// fspool's children (receivers and decoders) are started by one helper process per fspool
// process, native/fspool_spawner.c, which also guards them (spec/processing.md, "Starting a
// child" and "If fspool dies"). This is fspool's side of it.
//
// A spawn is synchronous, as libuv's is: the request goes out with the child's fds, and the
// reply says the child has exec'd (its pid) or why it could not (an errno). The child is
// fspool's own (the helper clones it with CLONE_PARENT), so fspool learns of its exit from
// SIGCHLD and reads its status with waitid, without reaping it: the zombie keeps its pid and
// process group id from reuse until the child is released.
//
// Where the kernel refuses CLONE_PARENT (qemu-user), the helper's children are its own: it
// reports each exit on the socket ('X') and sends us a SIGCHLD, and it reaps the child once
// released. Such children ("reported") are never waited for nor reaped here.
import { closeSync } from 'node:fs';
import { native } from './native.js';
import { os } from './lazy.js';

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Its fate is unknown, or it was killed because it could no longer be guarded. */
  lost?: string;
}

export type Spawned = { pid: number; exited: Promise<ChildExit> } | { errno: number };

/** Longer requests are refused as E2BIG here; the helper would refuse them too. */
const MAX_REQUEST = 256 << 20;

let signalNames: Map<number, NodeJS.Signals> | undefined;
function signalName(n: number): NodeJS.Signals {
  signalNames ??= new Map(Object.entries(os().constants.signals).map(([name, num]) => [num, name as NodeJS.Signals]));
  return signalNames.get(n) ?? (`SIG${n}` as NodeJS.Signals);
}

type Report = (pid: number, exit: ChildExit) => void;

/** The exit a 16-byte record ('X' PID CODE SIGNAL) reports. */
function reportedExit(rec: Buffer): ChildExit {
  const code = rec.readInt32LE(8);
  return code >= 0 ? { code, signal: null } : { code: null, signal: signalName(rec.readInt32LE(12)) };
}

function killGroupQuietly(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    /* gone already */
  }
}

/** One running helper process, our child. */
class Helper {
  readonly pid: number;
  private requestFd: number | undefined;
  private readonly onExit = () => this.close();

  /** `report`: an exit of a child of the helper's own (see the top of this file). */
  constructor(
    path: string,
    private readonly report: Report,
  ) {
    const h = native().spawnHelper(path);
    this.pid = h.pid;
    this.requestFd = h.requestFd;
    process.on('exit', this.onExit);
  }

  get closed(): boolean {
    return this.requestFd === undefined;
  }

  /**
   * The child's pid once it has exec'd (and whether it is the helper's own, its exit reported),
   * or the errno of its failure. Throws if the helper died.
   */
  spawn(request: Buffer, fds: number[]): { pid: number; reported: boolean } | { errno: number; zombie: number } {
    if (this.requestFd === undefined) throw Object.assign(new Error('fspool-spawner is closed'), { code: 'EPIPE', syscall: 'sendmsg' });
    native().helperSend(this.requestFd, request, fds);
    // Reports of exits may come before the reply.
    let reply = this.next(true);
    while (this.took(reply)) reply = this.next(true);
    const kind = String.fromCharCode(reply[0]!);
    if (kind === 'P') return { pid: reply.readInt32LE(4), reported: reply.readInt32LE(8) === 1 };
    if (kind === 'F') return { errno: reply.readInt32LE(4), zombie: reply.readInt32LE(8) };
    throw new Error(`fspool-spawner: unexpected reply ${JSON.stringify(kind)}`);
  }

  /** Pass on the reports of exits that have come (the helper sent a SIGCHLD with them). */
  readReports(): void {
    for (let rec = this.next(false); rec && this.took(rec); rec = this.next(false));
  }

  /** An exit report is passed on: true. Anything else is a reply. */
  private took(rec: Buffer): boolean {
    if (rec[0] !== 0x58 /* X */) return false;
    this.report(rec.readInt32LE(4), reportedExit(rec));
    return true;
  }

  /** The next record; undefined if none is there yet (wait false) or the helper is gone. */
  private next(wait: true): Buffer;
  private next(wait: false): Buffer | undefined;
  private next(wait: boolean): Buffer | undefined {
    if (this.requestFd === undefined) return undefined;
    const rec = native().helperRecv(this.requestFd, wait);
    if (rec === null) {
      if (wait) throw Object.assign(new Error('fspool-spawner closed its socket'), { code: 'ECONNRESET', syscall: 'read' });
      return undefined;
    }
    return rec;
  }

  /** Tell the helper about child `pid`: 'E' its payload is whole, 'R' fspool is done with it. */
  tell(what: 'E' | 'R', pid: number): void {
    if (this.requestFd === undefined) return;
    const msg = Buffer.alloc(9);
    msg.writeUInt32LE(5, 0);
    msg.write(what, 4, 'latin1');
    msg.writeInt32LE(pid, 5);
    try {
      native().helperSend(this.requestFd, msg, []);
    } catch {
      /* the helper died: the next spawn finds out and starts another */
    }
  }

  /**
   * Close our end of the request socket: the helper SIGKILLs the groups of the children not
   * released, and exits. Then reap it, waiting a little: it exits at once, and a helper seen
   * after fspool's exit would look like a process left behind. One that does not (stopped by a
   * debugger) is left to init, after ~2 s. The first looks come 50 µs apart: the helper is
   * usually gone within them, and every fspool process ends here.
   */
  close(): void {
    if (this.requestFd === undefined) return;
    closeSync(this.requestFd);
    this.requestFd = undefined;
    process.off('exit', this.onExit);
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    for (let waited = 0, step = 0.05; waited < 2000 && !native().reap(this.pid, false); waited += step, step = Math.min(step * 2, 1)) {
      Atomics.wait(sleeper, 0, 0, step);
    }
  }

  /** It died (someone killed it): reap it, and forget it. */
  died(): void {
    if (this.requestFd !== undefined) closeSync(this.requestFd);
    this.requestFd = undefined;
    process.off('exit', this.onExit);
    native().reap(this.pid, true);
  }
}

interface Running {
  resolve: (e: ChildExit) => void;
  guard: Helper;
  /** The helper's own child: its exit comes as a report, and the helper reaps it. */
  reported: boolean;
  exited: boolean;
  released: boolean;
}

/**
 * Starts children through a helper, started ahead of the first spawn (warm) or by it, and again
 * if it dies. One serves every run of a process: it belongs to the process, as its fd table does.
 */
export class Spawner {
  private helper: Helper | undefined;
  /** Children not yet both exited and released. */
  private readonly children = new Map<number, Running>();
  /** Node's signal listeners do not keep the event loop alive; this does, while children run. */
  private keepAlive: NodeJS.Timeout | undefined;
  private readonly onSigchld = () => this.check();
  private readonly onReport: Report = (pid, exit) => this.reportedExit(pid, exit);
  private listening = false;

  constructor(private readonly path: string) {}

  /**
   * Start a child from a request built by execRequest, with fds [stdin, stdout, stderr] and
   * optionally the write end of its stdin pipe, which the helper holds until `allowEof`.
   */
  spawn(request: Buffer, fds: number[]): Spawned {
    if (request.length > MAX_REQUEST) return { errno: os().constants.errno.E2BIG };
    // Listening before the child exists: its SIGCHLD cannot come too early.
    this.watch();
    for (let attempt = 0; ; attempt++) {
      const h = this.current();
      let r: ReturnType<Helper['spawn']>;
      try {
        r = h.spawn(request, fds);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        // Only a request the helper never read may be sent again: once it has the request, the
        // child may exist, and a second one would run the job twice.
        const unsent = err.syscall === 'sendmsg' && (err.code === 'EPIPE' || err.code === 'ECONNRESET');
        if (attempt > 0 || !unsent) {
          this.unwatchIfIdle();
          throw e;
        }
        // The helper died since the last spawn: start another (the fds are still ours).
        this.helperDied(h);
        continue;
      }
      if ('errno' in r) {
        if (r.zombie > 0) native().reap(r.zombie, true);
        this.unwatchIfIdle();
        return { errno: r.errno };
      }
      const exited = new Promise<ChildExit>((resolve) =>
        this.children.set(r.pid, { resolve, guard: h, reported: r.reported, exited: false, released: false }),
      );
      return { pid: r.pid, exited };
    }
  }

  /** The payload is whole: the helper closes its copy of the child's stdin pipe. */
  allowEof(pid: number): void {
    this.children.get(pid)?.guard.tell('E', pid);
  }

  /** fspool is done with the child: the helper forgets it, and it is reaped once it has exited. */
  release(pid: number): void {
    const c = this.children.get(pid);
    if (!c || c.released) return;
    c.released = true;
    c.guard.tell('R', pid);
    if (c.exited && c.reported) this.children.delete(pid);
    else if (c.exited) this.reap(pid);
  }

  /**
   * Start the helper now, if it is not running, so that its own start (an exec, the dynamic
   * loader) goes on beside the caller's work before the first spawn rather than inside it.
   * Throws if it cannot start.
   */
  warm(): void {
    this.current();
  }

  private current(): Helper {
    if (this.helper?.closed) this.helper = undefined;
    this.helper ??= new Helper(this.path, this.onReport);
    return this.helper;
  }

  /** From the first child on, SIGCHLD is listened to for good (a listener costs nothing idle). */
  private watch(): void {
    if (!this.listening) process.on('SIGCHLD', this.onSigchld);
    this.listening = true;
    this.keepAlive ??= setInterval(this.onSigchld, 1000);
  }

  private unwatchIfIdle(): void {
    if (!this.keepAlive || [...this.children.values()].some((c) => !c.exited)) return;
    clearInterval(this.keepAlive);
    this.keepAlive = undefined;
  }

  private reap(pid: number): void {
    this.children.delete(pid);
    native().reap(pid, true);
  }

  /** The helper's own child `pid` has exited; the helper reaps it once it is released. */
  private reportedExit(pid: number, exit: ChildExit): void {
    const c = this.children.get(pid);
    if (!c || c.exited) return;
    c.exited = true;
    c.resolve(exit);
    if (c.released) this.children.delete(pid);
  }

  /** A SIGCHLD: which of our children have exited? And is the helper still there? */
  private check(): void {
    const live = this.helper && !this.helper.closed ? this.helper : undefined;
    live?.readReports();
    for (const [pid, c] of this.children) {
      if (c.exited || c.reported) continue;
      const st = native().childStatus(pid);
      if (st === undefined) continue;
      c.exited = true;
      if (st === null) c.resolve({ code: null, signal: null, lost: `child ${pid} was reaped by someone else` });
      else c.resolve(st[0] >= 0 ? { code: st[0], signal: null } : { code: null, signal: signalName(st[1]) });
      if (c.released || st === null) this.children.delete(pid);
      if (c.released && st !== null) native().reap(pid, true);
    }
    const h = this.helper;
    if (h && !h.closed && native().childStatus(h.pid) !== undefined) this.helperDied(h);
    this.unwatchIfIdle();
  }

  /**
   * The helper is gone (someone killed it). Its children run on, but unguarded: if fspool died
   * now, a receiver would read a clean EOF on a truncated payload. So they are killed, and
   * their runs end as lost.
   */
  private helperDied(h: Helper): void {
    // The exits it reported before it died are real ones.
    h.readReports();
    h.died();
    if (this.helper === h) this.helper = undefined;
    for (const [pid, c] of this.children) {
      if (c.guard !== h || c.exited || c.released) continue;
      killGroupQuietly(pid);
      c.resolve({ code: null, signal: null, lost: `fspool-spawner (pid ${h.pid}) died, and the command was killed with it` });
      // Its exit still comes (SIGCHLD), and it is reaped at its release. The helper's own
      // child is init's now, which reaps it.
      c.exited = true;
    }
  }
}
