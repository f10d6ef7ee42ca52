// Running one job: from a decoded header and a payload source to a judged outcome.
import { closeSync, fstatSync, openSync } from 'node:fs';
import { basename } from 'node:path';
import { describe } from '../errors.js';
import { bytesLeft, Progress } from '../progress.js';
import type { Header } from '../packet/header.js';
import { execBytes, execProblem, type JobLocation, jobEnv } from '../packet/jobenv.js';
import { asOwner, type Owner } from '../queue/owner.js';
import { createNew } from '../sys/durable.js';
import { fdOffset } from '../sys/fd.js';
import { type Delivery, deliver, type PayloadStream } from './deliver.js';
import type { RunContext } from './context.js';
import { ExecError } from '../sys/exec.js';
import { judge, type Outcome } from './policy.js';
import { Receiver } from './receiver.js';
import { fileTail, StderrTail } from './stderrTail.js';

export interface RunOptions {
  command: string;
  /** The processor's own params, given after `--`, as bytes. */
  params: Buffer[];
  allowJobParams: boolean;
  ignorePayload: boolean;
  timeoutSeconds?: number;
  graceSeconds: number;
  /** Where the receiver's stdout and stderr go: ours, or a file (saveboth). */
  outputFile?: string;
  /**
   * Whose file-system identity makes `outputFile`: the queue's owner, where root works in a queue
   * another user owns (owner.ts), so that a jobs/ swapped for a symlink leads it nowhere the
   * owner could not write.
   */
  outputAs?: Owner;
  /** Keep the tail of the receiver's stderr (or saved output) for the journal. */
  keepStderrTail?: boolean;
}

/**
 * The payload: an fd positioned at it (zero-copy) or a stream we copy into a pipe. `offset`:
 * the fd's offset, where the payload starts, when the producer knows it (else it is read from
 * /proc, which costs an open and a read).
 */
export type PayloadSource = { kind: 'fd'; fd: number; offset?: number } | ({ kind: 'stream' } & PayloadStream);

export interface JobInput {
  header: Header;
  location?: JobLocation;
  payload: PayloadSource;
}


function watchOffset(fd: number, start: number, progress: Progress): NodeJS.Timeout {
  return setInterval(() => {
    try {
      progress.set(fdOffset(fd) - start);
    } catch {
      /* fd closed at the end of the job */
    }
  }, 250);
}

/**
 * The output file (--output-to saveboth) could not be made: a directory at NAME.out, say, put
 * there by whoever can write jobs/. That is fspool's own trouble, not the packet's: the job is
 * kept and the run stops, whatever --on-error says (but see the name too long, below).
 */
class OutputError extends Error {
  readonly outcome: Outcome;
  constructor(path: string, cause: unknown) {
    super(describe(cause));
    // Except a name too long for the file system: the packet's own name, one byte short of the
    // limit, makes NAME.out one too many; that is the packet's doing, its job fails, and
    // --on-error applies (kept and stopped at, it would hold the queue for good).
    this.outcome =
      (cause as NodeJS.ErrnoException).code === 'ENAMETOOLONG'
        ? { ok: false, reason: `cannot write its output to ${path}: ${describe(cause)}: the job file's name is too long to add .out to; the command was not started`, facts: { kind: 'bad-packet', bytes: 0 } }
        : { ok: false, fatal: true, reason: `cannot write its output to ${path}: ${describe(cause)}`, facts: { kind: 'kept', bytes: 0 } };
  }
}

function output(path: string, as: Owner | undefined): number {
  try {
    return asOwner(as, () => createNew(path, { readable: true }));
  } catch (e) {
    throw new OutputError(path, e);
  }
}

export async function runJob(job: JobInput, opts: RunOptions, ctx: RunContext): Promise<Outcome> {
  const { header } = job;
  const { log, stop: stopper } = ctx;
  const stop = () => {
    if (job.payload.kind === 'stream') job.payload.abort();
  };
  if (header.cmd.kind !== 'Command') {
    stop();
    // As fspl: saveboth leaves an (empty) output file for every job it handled.
    try {
      if (opts.outputFile) closeSync(output(opts.outputFile, opts.outputAs));
    } catch (e) {
      if (e instanceof OutputError) return e.outcome;
      throw e;
    }
    return header.cmd.kind === 'NOP'
      ? { ok: true, facts: { kind: 'success', bytes: 0 } }
      : { ok: false, reason: 'Fail packet', facts: { kind: 'fail-packet', bytes: 0 } };
  }
  const problem = execProblem(header, opts.allowJobParams);
  if (problem) {
    stop();
    return { ok: false, reason: `${problem}; the command was not started`, facts: { kind: 'bad-packet', bytes: 0 } };
  }
  // concat, not push(...params): a packet's params may be more than a call takes arguments.
  const argv: Buffer[] = [Buffer.from(opts.command), ...opts.params].concat(opts.allowJobParams ? header.cmd.params : []);
  // fspl's default, and routine: worth a line at INFO, not a warning.
  if (!opts.allowJobParams && header.cmd.params.length > 0) log.info(`job ${header.seq}: its params are ignored because --allow-job-params was not given`);

  // Stopping already: do not start another receiver.
  if (stopper.requested) {
    stop();
    return { ok: false, reason: `interrupted by ${stopper.requested}`, interrupted: stopper.requested, facts: { kind: 'interrupted', signal: stopper.requested } };
  }
  let nullFd: number | undefined;
  let outFd: number | undefined;
  let tail: StderrTail | undefined;
  let startOffset = 0;
  let receiver: Receiver;
  try {
    let stdin: number | 'pipe';
    if (opts.ignorePayload) {
      stop();
      stdin = nullFd = openSync('/dev/null', 'r');
    } else {
      stdin = job.payload.kind === 'fd' ? job.payload.fd : 'pipe';
    }
    if (opts.outputFile) outFd = output(opts.outputFile, opts.outputAs);
    else if (opts.keepStderrTail) tail = new StderrTail();
    if (job.payload.kind === 'fd' && !opts.ignorePayload) startOffset = job.payload.offset ?? fdOffset(job.payload.fd);
    receiver = new Receiver({
      argv,
      env: jobEnv(header, job.location),
      stdin,
      stdout: outFd ?? 'inherit',
      stderr: outFd ?? tail?.fd ?? 'inherit',
      timeoutSeconds: opts.timeoutSeconds,
      graceSeconds: opts.graceSeconds,
    });
  } catch (e) {
    stop();
    if (nullFd !== undefined) closeSync(nullFd);
    if (outFd !== undefined) closeSync(outFd);
    tail?.close();
    if (e instanceof ExecError) return { ok: false, reason: `cannot run command: ${e.message}`, facts: { kind: 'cannot-start' } };
    if (e instanceof OutputError) return e.outcome;
    throw e;
  }
  // The receiver holds its own copies now (the output file's fd stays, to read its tail).
  if (nullFd !== undefined) closeSync(nullFd);
  tail?.spawned();
  ctx.crash.reach('receiver-running');

  const unforward = stopper.forward(receiver);
  let delivery: Delivery | undefined;
  // A receiver writing to our stderr itself (stdin-process) would run into the line: the
  // line is drawn only when its stderr passes through us (the tail) or goes to a file.
  const progress =
    opts.ignorePayload || (tail === undefined && outFd === undefined)
      ? undefined
      : Progress.start(`job ${header.seq} (${basename(opts.command)})`, job.payload.kind === 'fd' ? bytesLeft(job.payload.fd, startOffset) : undefined, true);
  tail?.showing(progress);
  // Zero-copy: the receiver reads our fd, so its offset is its progress.
  const watcher = progress && job.payload.kind === 'fd' ? watchOffset(job.payload.fd, startOffset, progress) : undefined;
  try {
    if (!opts.ignorePayload && job.payload.kind === 'stream') delivery = await deliver(receiver, job.payload, progress);
    const exit = await receiver.done;
    if (watcher) clearInterval(watcher);
    progress?.done(watcher && job.payload.kind === 'fd' ? fdOffset(job.payload.fd) - startOffset : undefined);
    // Through a pipe: what the receiver left in it (a whole payload can fit in a pipe).
    let unread = receiver.unreadInput;
    let bytes = delivery?.bytes ?? 0;
    if (!opts.ignorePayload && job.payload.kind === 'fd') {
      // The receiver shared our file offset: how far it got is how far it read (the one look
      // at the offset after the start, which came from the payload's producer).
      const fd = job.payload.fd;
      const at = fdOffset(fd);
      unread = Math.max(0, fstatSync(fd).size - at);
      bytes = at - startOffset;
    }
    const stderrTail = (tail ? await tail.take() : opts.keepStderrTail && outFd !== undefined ? fileTail(outFd) : undefined) || undefined;
    const outcome = judge(exit, delivery, unread, execBytes(header, opts.allowJobParams));
    // A receiver told to stop that still took the whole payload and exited 0 has given its
    // verdict: the job is done, and running it again would apply it twice. Anything less is an
    // interruption, and the job stays queued.
    const sig = stopper.interrupted;
    if (sig && !exit.startError && !(outcome.ok && !outcome.note)) {
      // The job runs again: nothing of this run may work on beside it (a child that ignored
      // the signal). Its group id is still ours to signal: the receiver is not released yet.
      receiver.kill('SIGKILL');
      return { ok: false, reason: `interrupted by ${sig}`, interrupted: sig, facts: { kind: 'interrupted', signal: sig, bytes, stderrTail } };
    }
    return { ...outcome, facts: { ...outcome.facts!, bytes, stderrTail } };
  } finally {
    if (watcher) clearInterval(watcher);
    if (outFd !== undefined) closeSync(outFd);
    receiver.release();
    unforward();
  }
}
