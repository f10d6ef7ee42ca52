// Running one job: from a decoded header and a payload source to a judged outcome.
import { closeSync, fstatSync, openSync } from 'node:fs';
import { log } from '../log.js';
import { Progress } from '../progress.js';
import type { Header } from '../packet/header.js';
import { type JobLocation, jobEnv } from '../packet/jobenv.js';
import { fdOffset } from '../sys/fd.js';
import { type Delivery, deliver, type PayloadStream } from './deliver.js';
import { ExecError } from './exec.js';
import { interrupts } from './interrupts.js';
import { Receiver, type ReceiverExit } from './receiver.js';

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
}

/** The payload: an fd positioned at it (zero-copy) or a stream we copy into a pipe. */
export type PayloadSource = { kind: 'fd'; fd: number } | ({ kind: 'stream' } & PayloadStream);

export interface JobInput {
  header: Header;
  location?: JobLocation;
  payload: PayloadSource;
}

export type Outcome =
  | { ok: true; note?: string }
  /** `fatal`: the command cannot run at all; stop the whole run, whatever --on-error says. */
  | { ok: false; reason: string; fatal?: boolean; interrupted?: NodeJS.Signals };

function judge(exit: ReceiverExit, delivery: Delivery | undefined, unread: number): Outcome {
  if (exit.startError) return { ok: false, fatal: true, reason: `cannot run command: ${exit.startError}` };
  if (delivery?.failure) return { ok: false, reason: `${delivery.failure}; receiver killed before end of input` };
  if (exit.timedOut) return { ok: false, reason: `timed out; command ${exit.signal ? `killed by ${exit.signal}` : `exited with status ${exit.code}`}` };
  if (exit.signal) return { ok: false, reason: `command killed by ${exit.signal}` };
  if (exit.code !== 0) {
    const early = delivery?.early || unread > 0 ? ' before reading all of its input' : '';
    return { ok: false, reason: `command exited with status ${exit.code}${early}` };
  }
  if (delivery?.early) return { ok: true, note: 'command exited 0 before reading all of its input' };
  if (unread > 0) return { ok: true, note: `command exited 0 leaving ${unread} payload bytes unread` };
  return { ok: true };
}

function watchOffset(fd: number, progress: Progress): NodeJS.Timeout {
  const start = fdOffset(fd);
  return setInterval(() => {
    try {
      progress.set(fdOffset(fd) - start);
    } catch {
      /* fd closed at the end of the job */
    }
  }, 250);
}

export async function runJob(job: JobInput, opts: RunOptions): Promise<Outcome> {
  const { header } = job;
  const stop = () => {
    if (job.payload.kind === 'stream') job.payload.abort();
  };
  if (header.cmd.kind !== 'Command') {
    stop();
    // As fspl: saveboth leaves an (empty) output file for every job it handled.
    if (opts.outputFile) closeSync(openSync(opts.outputFile, 'w', 0o644));
    return header.cmd.kind === 'NOP' ? { ok: true } : { ok: false, reason: 'Fail packet' };
  }
  const argv: Buffer[] = [Buffer.from(opts.command), ...opts.params];
  if (opts.allowJobParams) argv.push(...header.cmd.params);
  else if (header.cmd.params.length > 0) log.warn(`job ${header.seq}: its params are ignored because --allow-job-params was not given`);

  let nullFd: number | undefined;
  let outFd: number | undefined;
  let receiver: Receiver;
  try {
    let stdin: number | 'pipe';
    if (opts.ignorePayload) {
      stop();
      stdin = nullFd = openSync('/dev/null', 'r');
    } else {
      stdin = job.payload.kind === 'fd' ? job.payload.fd : 'pipe';
    }
    if (opts.outputFile) outFd = openSync(opts.outputFile, 'w', 0o644);
    receiver = new Receiver({
      argv,
      env: jobEnv(header, job.location),
      stdin,
      stdout: outFd ?? 'inherit',
      stderr: outFd ?? 'inherit',
      timeoutSeconds: opts.timeoutSeconds,
      graceSeconds: opts.graceSeconds,
    });
  } catch (e) {
    stop();
    if (nullFd !== undefined) closeSync(nullFd);
    if (outFd !== undefined) closeSync(outFd);
    if (e instanceof ExecError) return { ok: false, reason: `cannot run command: ${e.message}` };
    throw e;
  }
  // The receiver holds its own copies now.
  if (nullFd !== undefined) closeSync(nullFd);
  if (outFd !== undefined) closeSync(outFd);

  const unforward = interrupts.forward(receiver);
  let delivery: Delivery | undefined;
  const progress = opts.ignorePayload ? undefined : Progress.start(`job ${header.seq}`);
  // Zero-copy: the receiver reads our fd, so its offset is its progress.
  const watcher = progress && job.payload.kind === 'fd' ? watchOffset(job.payload.fd, progress) : undefined;
  try {
    if (!opts.ignorePayload && job.payload.kind === 'stream') delivery = await deliver(receiver, job.payload, progress);
    const exit = await receiver.done;
    if (watcher) clearInterval(watcher);
    progress?.done();
    let unread = -1;
    if (!opts.ignorePayload && job.payload.kind === 'fd') {
      // The receiver shared our file offset: how far it got is how far it read.
      const fd = job.payload.fd;
      unread = Math.max(0, fstatSync(fd).size - fdOffset(fd));
    }
    const outcome = judge(exit, delivery, unread);
    if (interrupts.signal && !exit.startError) {
      return { ok: false, reason: `interrupted by ${interrupts.signal}`, interrupted: interrupts.signal };
    }
    return outcome;
  } finally {
    if (watcher) clearInterval(watcher);
    receiver.release();
    unforward();
  }
}
