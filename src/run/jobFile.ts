// One job file, from the name a scan found to a judged run: opened again (it must still be the
// file the scan read), decoded and verified as --delivery and --require-signature say, and its
// payload delivered to the receiver (src/run/job.ts).
import { closeSync, fstatSync, type Stats } from 'node:fs';
import { type DecodeContext, openForDelivery } from '../codec/decode.js';
import { describe, FspoolError } from '../errors.js';
import { encodeHeader } from '../packet/codec.js';
import { PacketError } from '../packet/codec.js';
import { DecoderError } from '../codec/external.js';
import { identityOf, NotAJobFile, openJobFile, sameIdentity } from '../queue/jobfile.js';
import type { Readable } from '../queue/jobIndex.js';
import type { Queue } from '../queue/queue.js';
import { native } from '../sys/native.js';
import type { RunContext } from './context.js';
import type { RunKind } from '../queue/journal.js';
import type { Outcome } from './policy.js';
import { type RunOptions, runJob } from './job.js';
import { type DeliveryMode, preparePayload, type Unverified, verifyOnly } from './source.js';
import { foreignOwner } from '../queue/owner.js';

/** How a queue's job files are run. */
export interface FileRunOptions extends Omit<RunOptions, 'outputFile'> {
  decode: DecodeContext;
  delivery: DeliveryMode;
  /** --output-to saveboth: the receiver's output goes to jobs/NAME.out. */
  saveOutput: boolean;
}

/**
 * A job file that turned out not to be the job after all, so no run of it is recorded:
 * `vanished`, removed or replaced since the scan (look again); `unverified`, a required
 * signature is missing or wrong, or could not be verified within --timeout (the file is
 * unreadable, whatever seq it claims).
 */
/**
 * Not the job after all: the file is gone or replaced (`vanished`), or does not prove a required
 * signature (`unverified`); or the job could not be started for this machine's trouble
 * (`not-started`: no room to decode into, a decode folder that may not be used), which is no
 * outcome of the packet's: it stays due, and no --on-error or --retries sees it.
 */
export type Skip = { skip: 'vanished' } | ({ skip: 'unverified' } & Unverified) | { skip: 'not-started'; reason: string };

/** The job file was removed or replaced between two passes over it. */
class Replaced extends FspoolError {
  override name = 'Replaced';
}

/** The file the scan read, opened again and still under its name; undefined if it was removed or replaced since. */
function reopen(job: Readable): number | undefined {
  let opened: { fd: number; stat: Stats };
  try {
    opened = openJobFile(job.path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || e instanceof NotAJobFile) return undefined;
    throw e;
  }
  if (job.identity && !sameIdentity(job.identity, identityOf(opened.stat))) {
    closeSync(opened.fd);
    return undefined;
  }
  // The receiver may get this fd as its stdin, which must be blocking.
  native().clearNonblock(opened.fd);
  return opened.fd;
}

/**
 * Whether a file proves the signature --require-signature asks for: a Skip when it does not
 * (or is gone), else undefined. Read in full, without a receiver.
 */
export async function verifyFile(job: Readable, decode: DecodeContext, timeoutSeconds?: number): Promise<Skip | undefined> {
  const fd = reopen(job);
  if (fd === undefined) return { skip: 'vanished' };
  try {
    const bad = await verifyOnly(await openForDelivery(fd, decode, 0), timeoutSeconds);
    return bad && { skip: 'unverified', ...bad };
  } catch (e) {
    return { skip: 'unverified', reason: describe(e) };
  } finally {
    closeSync(fd);
  }
}

/**
 * What a run counts for when its job file was written while the job ran (spec/threat-model.md):
 *
 * - its size changed: it was still being written under its job name (in place, instead of
 *   under a temp name and renamed), and what the receiver got may be cut short;
 * - its times changed (ctime moves with any write, and cannot be set back): a run that took
 *   the whole payload and exited 0 is done (a touch leaves the same packet), any other run may
 *   have been given other bytes than the packet's;
 * - under --require-signature, stream mode reads the file a second time after the pass that
 *   verified it: a decode that then fails its checks read something else than was verified.
 *
 * Then the run cannot count, nor is the packet to blame: the job is kept ('kept', not a
 * failure: --on-error and --retries do not apply), and the run stops.
 */
function countsFor(outcome: Outcome, fd: number, job: Readable, opts: FileRunOptions): Outcome {
  if (!outcome.ok && (outcome.fatal || outcome.interrupted)) return outcome;
  const now = identityOf(fstatSync(fd));
  const was = job.identity;
  let why: string | undefined;
  if (was && now.size !== was.size) {
    why = `the job file changed size while the job ran (${was.size} bytes, now ${now.size}): it was being written under its job name; a writer must use a temp name and rename`;
  } else if (!outcome.ok && opts.decode.keys.requiresSignature && outcome.facts?.kind === 'decoder-failure') {
    why = `${outcome.reason}; the file no longer proves the signature it proved before the job started (changed while the job ran?)`;
  } else if (was && (now.mtimeMs !== was.mtimeMs || now.ctimeMs !== was.ctimeMs) && !(outcome.ok && !outcome.partial)) {
    why = 'the job file was written while the job ran, and the command did not take all of it and exit 0: what it read may not have been the packet';
  }
  if (why === undefined) return outcome;
  return { ok: false, fatal: true, reason: why, facts: { ...outcome.facts, kind: 'kept' } };
}

/** The journal's word for a run that could not even start delivering. */
function failureKind(e: unknown): RunKind {
  if (e instanceof DecoderError) return 'decoder-failure';
  if (e instanceof PacketError) return 'bad-packet';
  return 'error';
}

/**
 * Run one job file: open and decode it again (it is the one we run) and deliver its payload.
 * Skipped if the file is gone or replaced since the scan, or does not prove a required signature.
 */
export async function runFile(queue: Queue, job: Readable, opts: FileRunOptions, ctx: RunContext): Promise<Outcome | Skip> {
  const location = { filename: job.name, queuedir: queue.dir, fullpath: job.path };
  const run: RunOptions = { ...opts, outputFile: opts.saveOutput ? `${job.path}.out` : undefined, outputAs: foreignOwner(queue.dir), keepStderrTail: true };
  const fd = reopen(job);
  if (fd === undefined) return { skip: 'vanished' };
  const extraFds: number[] = [];
  let cleanup = () => {};
  /**
   * Interrupted before the receiver started: whatever the decoding then said (its decoders were
   * killed) is no verdict on the packet. The job stays, as after any interrupted run.
   */
  const interrupted = (): Outcome | undefined => {
    const sig = ctx.stop.interrupted;
    return sig && { ok: false, reason: `interrupted by ${sig}`, interrupted: sig, facts: { kind: 'interrupted', signal: sig, bytes: 0 } };
  };
  try {
    // A file just opened: the packet starts at offset 0.
    const prepared = await preparePayload(await openForDelivery(fd, opts.decode, 0), {
      mode: opts.delivery,
      keys: opts.decode.keys,
      fd,
      at: 0,
      spoolDir: queue.spoolDir,
      spoolAs: opts.delivery === 'verified' ? foreignOwner(queue.dir) : undefined,
      timeoutSeconds: opts.timeoutSeconds,
      reopen: async () => {
        const again = reopen(job);
        if (again === undefined) throw new Replaced(`${job.path} was removed or replaced while it was being verified`);
        extraFds.push(again);
        return openForDelivery(again, opts.decode, 0);
      },
    });
    if (!prepared.ok) {
      const stopped = interrupted();
      if (stopped) return stopped;
      if (prepared.unverified) return { skip: 'unverified', reason: prepared.reason, timedOut: prepared.timedOut };
      if (prepared.local) return { skip: 'not-started', reason: prepared.reason };
      return { ok: false, reason: prepared.reason, ...(prepared.timedOut ? { facts: { kind: 'timeout', bytes: 0 } } : {}) };
    }
    cleanup = prepared.cleanup;
    // Same identity, so the same bytes: unless a header differs, which only a file rewritten
    // in place within the same second and size could do. That is another packet, not this job.
    if (!encodeHeader(prepared.header).equals(encodeHeader(job.header))) {
      if (prepared.payload.kind === 'stream') prepared.payload.abort();
      return { skip: 'vanished' };
    }
    const outcome = countsFor(await runJob({ header: prepared.header, location, payload: prepared.payload }, run, ctx), fd, job, opts);
    // A plain packet carries no length of its own: its file's size, as it ran, is what tells a
    // sender whether the copy that ran was the whole packet (receipts.md, "Cut short").
    if (prepared.layers.length > 0 || !outcome.facts) return outcome;
    return { ...outcome, facts: { ...outcome.facts, fileSize: job.identity?.size ?? fstatSync(fd).size } };
  } catch (e) {
    if (e instanceof FspoolError && e.exitCode === 2) throw e;
    // Not this job's failure: another file is under its name now, which the next look reads.
    if (e instanceof Replaced) return interrupted() ?? { skip: 'vanished' };
    return interrupted() ?? { ok: false, reason: describe(e), facts: { kind: failureKind(e), bytes: 0 } };
  } finally {
    cleanup();
    closeSync(fd);
    for (const x of extraFds) closeSync(x);
  }
}
