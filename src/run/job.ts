// Running one job: from a decoded header and a payload source to a judged outcome.
import { closeSync, fstatSync, openSync } from 'node:fs';
import { log } from '../log.js';
import { Progress } from '../progress.js';
import type { Header } from '../packet/header.js';
import { execBytes, execProblem, type JobLocation, jobEnv } from '../packet/jobenv.js';
import { createFresh } from '../queue/jobfile.js';
import { fdOffset } from '../sys/fd.js';
import { crashPoint } from '../sys/crashPoint.js';
import { type Delivery, deliver, type PayloadStream } from './deliver.js';
import { ExecError } from './exec.js';
import { interrupts } from './interrupts.js';
import { Receiver, type ReceiverExit } from './receiver.js';
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
  /** Issue 4: keep the tail of the receiver's stderr (or saved output) for the journal. */
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

/** How a run ended, in the journal's words (issue 4; spec/state-db.md lists them). */
export type RunKind =
  | 'success'
  | 'exit-code'
  | 'signal'
  | 'timeout'
  | 'decoder-failure'
  | 'early-exit'
  | 'fail-packet'
  | 'bad-packet'
  | 'cannot-start'
  | 'interrupted'
  | 'error';

/** What the journal records of a run besides the verdict. */
export interface RunFacts {
  kind: RunKind;
  exitCode?: number;
  signal?: string;
  /** Payload bytes the receiver took (read from the file, or written into its pipe). */
  bytes?: number;
  stderrTail?: string;
}

export type Outcome = (
  | { ok: true; note?: string }
  /** `fatal`: the command cannot run at all; stop the whole run, whatever --on-error says. */
  | { ok: false; reason: string; fatal?: boolean; interrupted?: NodeJS.Signals }
) & { facts?: RunFacts };

const E2BIG = 7;

/**
 * exec's E2BIG is the packet's doing when the packet brought a large share of the request (its
 * params and variables): then its job fails like any bad packet. Otherwise the processor's own
 * command line and environment are too large, which no job can fix.
 */
const PACKET_SHARE = 64 * 1024;

function judge(exit: ReceiverExit, delivery: Delivery | undefined, unread: number, packetBytes: number): Outcome {
  const how = { exitCode: exit.code ?? undefined, signal: exit.signal ?? undefined };
  if (exit.startError && exit.startErrno === E2BIG && packetBytes > PACKET_SHARE) {
    return { ok: false, reason: `cannot run command: the packet's params and variables (${packetBytes} bytes) make its argument list too long (E2BIG)`, facts: { kind: 'bad-packet' } };
  }
  if (exit.startError) return { ok: false, fatal: true, reason: `cannot run command: ${exit.startError}`, facts: { kind: 'cannot-start' } };
  if (delivery?.failure) return { ok: false, reason: `${delivery.failure}; receiver killed before end of input`, facts: { kind: 'decoder-failure', ...how } };
  if (exit.timedOut) {
    return { ok: false, reason: `timed out; command ${exit.signal ? `killed by ${exit.signal}` : `exited with status ${exit.code}`}`, facts: { kind: 'timeout', ...how } };
  }
  if (exit.signal) return { ok: false, reason: `command killed by ${exit.signal}`, facts: { kind: 'signal', ...how } };
  if (exit.code !== 0) {
    const early = delivery?.early || unread > 0;
    return { ok: false, reason: `command exited with status ${exit.code}${early ? ' before reading all of its input' : ''}`, facts: { kind: early ? 'early-exit' : 'exit-code', ...how } };
  }
  if (delivery?.early) return { ok: true, note: 'command exited 0 before reading all of its input', facts: { kind: 'success', ...how } };
  if (unread > 0) return { ok: true, note: `command exited 0 leaving ${unread} payload bytes unread`, facts: { kind: 'success', ...how } };
  return { ok: true, facts: { kind: 'success', ...how } };
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

export async function runJob(job: JobInput, opts: RunOptions): Promise<Outcome> {
  const { header } = job;
  const stop = () => {
    if (job.payload.kind === 'stream') job.payload.abort();
  };
  if (header.cmd.kind !== 'Command') {
    stop();
    // As fspl: saveboth leaves an (empty) output file for every job it handled.
    if (opts.outputFile) closeSync(createFresh(opts.outputFile));
    return header.cmd.kind === 'NOP'
      ? { ok: true, facts: { kind: 'success', bytes: 0 } }
      : { ok: false, reason: 'Fail packet', facts: { kind: 'fail-packet', bytes: 0 } };
  }
  const problem = execProblem(header, opts.allowJobParams);
  if (problem) {
    stop();
    return { ok: false, reason: `${problem}; the command was not started`, facts: { kind: 'bad-packet', bytes: 0 } };
  }
  const argv: Buffer[] = [Buffer.from(opts.command), ...opts.params];
  if (opts.allowJobParams) argv.push(...header.cmd.params);
  else if (header.cmd.params.length > 0) log.warn(`job ${header.seq}: its params are ignored because --allow-job-params was not given`);

  // Stopping already: do not start another receiver.
  if (interrupts.signal) {
    stop();
    return { ok: false, reason: `interrupted by ${interrupts.signal}`, interrupted: interrupts.signal, facts: { kind: 'interrupted', signal: interrupts.signal } };
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
    if (opts.outputFile) outFd = createFresh(opts.outputFile);
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
    throw e;
  }
  // The receiver holds its own copies now (the output file's fd stays, to read its tail).
  if (nullFd !== undefined) closeSync(nullFd);
  tail?.spawned();
  crashPoint('receiver-running');

  const unforward = interrupts.forward(receiver);
  let delivery: Delivery | undefined;
  const progress = opts.ignorePayload ? undefined : Progress.start(`job ${header.seq}`);
  // Zero-copy: the receiver reads our fd, so its offset is its progress.
  const watcher = progress && job.payload.kind === 'fd' ? watchOffset(job.payload.fd, startOffset, progress) : undefined;
  try {
    if (!opts.ignorePayload && job.payload.kind === 'stream') delivery = await deliver(receiver, job.payload, progress);
    const exit = await receiver.done;
    if (watcher) clearInterval(watcher);
    progress?.done();
    let unread = -1;
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
    if (interrupts.signal && !exit.startError && !(outcome.ok && !outcome.note)) {
      return { ok: false, reason: `interrupted by ${interrupts.signal}`, interrupted: interrupts.signal, facts: { kind: 'interrupted', signal: interrupts.signal, bytes, stderrTail } };
    }
    return { ...outcome, facts: { ...outcome.facts!, bytes, stderrTail } };
  } finally {
    if (watcher) clearInterval(watcher);
    if (outFd !== undefined) closeSync(outFd);
    receiver.release();
    unforward();
  }
}
