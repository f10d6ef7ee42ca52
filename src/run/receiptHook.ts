// Receipts after a processing pass (queue-process --receipt-to-dir / --receipt-exec,
// spec/receipts.md, "Commands"): for each stream the queue knows, up to MAX_STREAMS of them, a
// receipt is sent when it says something new, when the stream's files in jobs/ changed since
// the last one (a re-sent packet landed as a stale file: its sender waits for news), or when
// the last one is older than --receipt-every (one lost in transit is replaced even when the
// queue is idle). Sending is best effort: a failure is one WARN and is tried again after the
// next pass; processing never depends on it.
import { join } from 'node:path';
import type { DecodeContext } from '../codec/decode.js';
import { signReceipt } from '../codec/signedReceipt.js';
import { describe } from '../errors.js';
import { encodeReceipt } from '../packet/receipt.js';
import type { Queue } from '../queue/queue.js';
import { lookAtQueue, receiptFor, receiptStreams } from '../queue/receipt.js';
import { asOwner, foreignOwner } from '../queue/owner.js';
import { type StateDb, stateDir } from '../queue/stateDb.js';
import { writeFileDurably } from '../sys/durable.js';
import { readRegularFile } from '../sys/fd.js';
import { createHash } from '../sys/lazy.js';
import { runShell, shellFailure } from '../sys/shell.js';
import type { RunContext } from './context.js';

export interface ReceiptSending {
  toDir?: string;
  exec?: string;
  signWith?: string;
  keyPassphraseFile?: string;
  /** Send again after this long even when nothing changed. */
  everySeconds: number;
  /** How long the exec command may take (0: no limit), and its SIGTERM's grace before SIGKILL. */
  execTimeoutSeconds: number;
  graceSeconds: number;
  decode: DecodeContext;
}

/** What was last sent for each stream: QUEUE/fspool/receipts.json. */
interface Sent {
  version: 1;
  streams: Record<string, { fingerprint: string; sent_at: number }>;
}

const receiptFileName = (stream: string) => `fspool-receipt-${stream}.rcpt`;

function readSent(path: string): Sent {
  try {
    // As it is: a FIFO put there must not hang the processor.
    const s = JSON.parse(readRegularFile(path)) as Sent;
    if (s.version === 1 && typeof s.streams === 'object' && s.streams !== null) return s;
  } catch {
    /* none yet, or damaged: everything counts as not sent */
  }
  return { version: 1, streams: {} };
}

/** The hook a processor calls after each pass, with its state database (if it has one). */
export function receiptSender(queue: Queue, opts: ReceiptSending): (db: StateDb | undefined, ctx: RunContext) => Promise<void> {
  const said = { tooMany: false };
  return async (db, ctx) => {
    // Told to stop: the run ends now, and its receipts wait for the next one.
    if (ctx.stop.stopping) return;
    try {
      await sendReceipts(queue, db, opts, ctx, said);
    } catch (e) {
      ctx.log.warn(`cannot make the receipts of queue ${queue.dir}: ${describe(e)}; trying again after the next pass`);
    }
  };
}

async function sendReceipts(queue: Queue, db: StateDb | undefined, opts: ReceiptSending, ctx: RunContext, said: { tooMany: boolean }): Promise<void> {
  const { log } = ctx;
  const facts = await lookAtQueue(queue, db, opts.decode);
  // The record is in the queue owner's folder: read and written as the owner (owner.ts).
  const owner = foreignOwner(queue.dir);
  const record = join(stateDir(queue.dir), 'receipts.json');
  const sent = asOwner(owner, () => readSent(record));
  const now = Date.now();
  let changed = false;
  // Only streams the queue knows: a sender learns nothing from a receipt about none that it
  // would not do anyway (re-send what no receipt shows held).
  const streams = receiptStreams(facts);
  if (facts.streams.length > streams.length && !said.tooMany) {
    said.tooMany = true;
    log.warn(
      `queue ${queue.dir}: its files and journal name ${facts.streams.length} streams; receipts go for ${streams.length} of them, those packets were processed from first (files in jobs/ that name made-up streams? queue-ls shows them)`,
    );
  }
  for (const stream of streams) {
    // A stop ends the run now: what is left goes with the next run's pass.
    if (ctx.stop.stopping) break;
    const r = receiptFor(facts, db, stream, now);
    // The stream's own files: another stream's file landing is no news to this one's sender.
    const names = facts.jobs
      .filter((j) => j.header.stream === stream)
      .map((j) => j.name)
      .sort()
      .join('\n');
    // Its facts, not when they were told: the time and the journal's position (which any write
    // moves on, another stream's file cached among them) are left out.
    const fingerprint = createHash('sha256')
      .update(encodeReceipt({ ...r, created: 0, position: 0n }))
      .update(names)
      .digest('hex');
    const last = sent.streams[stream];
    if (last && last.fingerprint === fingerprint && now - last.sent_at < opts.everySeconds * 1000) continue;
    let bytes = encodeReceipt(r);
    if (opts.signWith) bytes = await signReceipt(bytes, opts.signWith, opts.keyPassphraseFile);
    if (await deliver(queue, stream, bytes, opts, ctx)) {
      sent.streams[stream] = { fingerprint, sent_at: now };
      changed = true;
    }
  }
  // Only the streams picked are remembered: the record stays as small as the cap, however many
  // streams files have named over time (one picked again later just gets its receipt again).
  const picked = new Set(streams);
  for (const stream of Object.keys(sent.streams)) {
    if (picked.has(stream)) continue;
    delete sent.streams[stream];
    changed = true;
  }
  if (changed) {
    try {
      asOwner(owner, () => writeFileDurably(record, `${record}.tmp`, `${JSON.stringify(sent)}\n`));
    } catch (e) {
      // No memory of what was sent (an unwritable queue): receipts go after every pass.
      log.debug(`cannot record the receipts sent in ${record}: ${describe(e)}`);
    }
  }
}

async function deliver(queue: Queue, stream: string, bytes: Buffer, opts: ReceiptSending, ctx: RunContext): Promise<boolean> {
  const { log } = ctx;
  let ok = true;
  if (opts.toDir !== undefined) {
    const name = receiptFileName(stream);
    try {
      writeFileDurably(join(opts.toDir, name), join(opts.toDir, `.${name}.tmp`), bytes);
      log.debug(`receipt for stream ${stream} written to ${opts.toDir}/${name}`);
    } catch (e) {
      log.warn(`cannot write the receipt into ${opts.toDir}: ${describe(e)}; trying again after the next pass`);
      ok = false;
    }
  }
  if (opts.exec !== undefined) {
    // Unattended: a command that hangs (an ssh to a host that does not answer) must not hold the
    // queue's lock, and its next jobs, for ever; a stop kills it (the receipt waits for the next run).
    const r = await runShell(opts.exec, bytes, { FSPOOL_STREAM: stream, FSPOOL_QUEUE: queue.dir }, 2, {
      timeoutSeconds: opts.execTimeoutSeconds,
      graceSeconds: opts.graceSeconds,
      guard: (child) => ctx.stop.guardLook(child),
    });
    const why = shellFailure(r);
    if (why && ctx.stop.stopping && r.timedOut === undefined) {
      log.info(`receipt command "${opts.exec}" stopped with the run; the next run sends the receipt`);
      ok = false;
    } else if (why) {
      log.warn(`receipt command "${opts.exec}" ${why}; trying again after the next pass`);
      ok = false;
    } else log.debug(`receipt for stream ${stream} given to "${opts.exec}"`);
  }
  return ok;
}
