// Receipts after a processing pass (queue-process --receipt-to-dir / --receipt-exec,
// spec/receipts.md, "Commands"): for every stream the queue knows, a receipt is sent when it
// says something new, when jobs/ changed since the last one (a re-sent packet landed as a
// stale file: its sender waits for news), or when the last one is older than --receipt-every
// (one lost in transit is replaced even when the queue is idle). Sending is best effort: a
// failure is one WARN and is tried again after the next pass; processing never depends on it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DecodeContext } from '../codec/decode.js';
import type { Logger } from '../log.js';
import { signReceipt } from '../codec/signedReceipt.js';
import { describe } from '../errors.js';
import { encodeReceipt } from '../packet/receipt.js';
import type { Queue } from '../queue/queue.js';
import { lookAtQueue, receiptFor } from '../queue/receipt.js';
import { type StateDb, stateDir } from '../queue/stateDb.js';
import { writeFileDurably } from '../sys/durable.js';
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
    const s = JSON.parse(readFileSync(path, 'utf8')) as Sent;
    if (s.version === 1 && typeof s.streams === 'object' && s.streams !== null) return s;
  } catch {
    /* none yet, or damaged: everything counts as not sent */
  }
  return { version: 1, streams: {} };
}

/** The hook a processor calls after each pass, with its state database (if it has one). */
export function receiptSender(queue: Queue, opts: ReceiptSending): (db: StateDb | undefined, ctx: RunContext) => Promise<void> {
  return async (db, ctx) => {
    // Told to stop: the run ends now, and its receipts wait for the next one.
    if (ctx.stop.stopping) return;
    try {
      await sendReceipts(queue, db, opts, ctx.log);
    } catch (e) {
      ctx.log.warn(`cannot make the receipts of queue ${queue.dir}: ${describe(e)}; trying again after the next pass`);
    }
  };
}

async function sendReceipts(queue: Queue, db: StateDb | undefined, opts: ReceiptSending, log: Logger): Promise<void> {
  const facts = await lookAtQueue(queue, db, opts.decode);
  const names = createHash('sha256').update(queue.jobDir().names.join('\n')).digest('hex');
  const record = join(stateDir(queue.dir), 'receipts.json');
  const sent = readSent(record);
  const now = Date.now();
  let changed = false;
  // Only streams the queue knows: a sender learns nothing from a receipt about none that it
  // would not do anyway (re-send what no receipt shows held).
  for (const stream of facts.streams) {
    const r = receiptFor(facts, db, stream, now);
    const fingerprint = createHash('sha256')
      .update(encodeReceipt({ ...r, created: 0 }))
      .update(names)
      .digest('hex');
    const last = sent.streams[stream];
    if (last && last.fingerprint === fingerprint && now - last.sent_at < opts.everySeconds * 1000) continue;
    let bytes = encodeReceipt(r);
    if (opts.signWith) bytes = await signReceipt(bytes, opts.signWith, opts.keyPassphraseFile);
    if (await deliver(queue, stream, bytes, opts, log)) {
      sent.streams[stream] = { fingerprint, sent_at: now };
      changed = true;
    }
  }
  if (changed) {
    try {
      writeFileDurably(record, `${record}.tmp`, `${JSON.stringify(sent)}\n`);
    } catch (e) {
      // No memory of what was sent (an unwritable queue): receipts go after every pass.
      log.debug(`cannot record the receipts sent in ${record}: ${describe(e)}`);
    }
  }
}

async function deliver(queue: Queue, stream: string, bytes: Buffer, opts: ReceiptSending, log: Logger): Promise<boolean> {
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
    const r = await runShell(opts.exec, bytes, { FSPOOL_STREAM: stream, FSPOOL_QUEUE: queue.dir }, 2);
    const why = shellFailure(r);
    if (why) {
      log.warn(`receipt command "${opts.exec}" ${why}; trying again after the next pass`);
      ok = false;
    } else log.debug(`receipt for stream ${stream} given to "${opts.exec}"`);
  }
  return ok;
}
