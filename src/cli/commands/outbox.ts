// Receipts and the outbox (spec/receipts.md): queue-receipt on the receiver; outbox-status,
// outbox-apply and outbox-resend on the sender.
import { statSync } from 'node:fs';
import { openReceipt, signReceipt } from '../../codec/signedReceipt.js';
import { FspoolError, UsageError } from '../../errors.js';
import { log } from '../../log.js';
import { decodeReceipt, encodeReceipt, NO_STREAM, ReceiptError } from '../../packet/receipt.js';
import { STREAM_ID } from '../../packet/codec.js';
import { applyReceipt } from '../../outbox/apply.js';
import { Outbox, type Ranges, toRanges } from '../../outbox/outbox.js';
import { resend } from '../../outbox/resend.js';
import { outboxStatus } from '../../outbox/status.js';
import { Queue } from '../../queue/queue.js';
import { lookAtQueue, receiptFor, receiptStreams } from '../../queue/receipt.js';
import { attachState, READER_BUSY_MS } from '../../queue/state.js';
import { readUpTo } from '../../sys/fd.js';
import { msIso, toJson } from '../json.js';
import { type DecodeArgs, decodeContext, decodeOptions, type OptionDef, queuedir, seconds, type Subcommand } from '../options.js';
import { print } from './out.js';
import { json } from './queueState.js';

export const outboxOption: OptionDef = {
  type: 'string',
  value: 'DIR',
  requiresArg: true,
  describe: 'Keep a copy of the packet in this outbox until a receipt acknowledges it (spec/receipts.md)',
};

const outboxDir: OptionDef = { ...outboxOption, demandOption: true, describe: 'The outbox directory (made by prepare --outbox)' };

/** A receipt on stdin is a few KB; anything this large is not one. */
const MAX_INPUT = 4 << 20;

// ---------------------------------------------------------------------------------------------
// queue-receipt

interface ReceiptArgs extends DecodeArgs {
  queuedir: string;
  stream?: string;
  'sign-with'?: string;
}

export const queueReceipt: Subcommand<ReceiptArgs> = {
  command: 'queue-receipt',
  describe: "Write a receipt for the queue's packets of one stream to stdout (for the sender's outbox-apply)",
  builder: (y) =>
    decodeOptions(y, { decoder: true, signature: false })
      .option('queuedir', queuedir)
      .option('stream', {
        type: 'string',
        value: 'ID',
        requiresArg: true,
        describe: 'The stream to describe (32 hex digits); default: the stream of the latest packet',
        coerce: (v: unknown) => {
          const s = String(v).toLowerCase();
          if (!STREAM_ID.test(s)) throw new UsageError(`invalid value "${v}" for --stream: expected 32 hex digits (outbox-status shows a stream's id)`);
          return s;
        },
      })
      .option('sign-with', { type: 'string', value: 'KEYFILE', requiresArg: true, describe: 'Sign the receipt with the OpenPGP secret key in this file' })
      .example('$0 queue-receipt -q /var/spool/q | ssh sender fspool outbox-apply --outbox ~/outbox', 'tell the sender what ran')
      .example('$0 queue-receipt -q q --sign-with recv.key > receipt', 'a signed receipt (outbox-apply --require-signature)') as never,
  handler: async (a) => {
    const q = new Queue(a.queuedir);
    const decode = decodeContext(a);
    const state = attachState(q, { create: true, busyMs: READER_BUSY_MS, cacheHeaders: true, without: 'going on without it: the receipt can prove nothing processed' });
    try {
      const facts = await lookAtQueue(q, state.db, decode);
      // Ranked as the receipts after a pass are: one dropped file cannot name the stream.
      const stream = a.stream ?? receiptStreams(facts)[0] ?? NO_STREAM;
      if (stream === NO_STREAM) log.info(`queue ${q.dir} knows no stream (no packet made with --outbox): the receipt says only what the queue waits for`);
      const others = facts.streams.filter((s) => s !== stream);
      if (others.length > 0) log.info(`queue ${q.dir} also has packets of stream(s) ${others.join(', ')}: --stream ID describes one of them`);
      let bytes = encodeReceipt(receiptFor(facts, state.db, stream));
      if (a['sign-with']) bytes = await signReceipt(bytes, a['sign-with'], a['key-passphrase-file']);
      print(bytes);
    } finally {
      state.close();
    }
  },
};

// ---------------------------------------------------------------------------------------------
// outbox-apply

interface ApplyArgs {
  outbox: string;
  'require-signature'?: string[];
}

export const outboxApply: Subcommand<ApplyArgs> = {
  command: 'outbox-apply',
  describe: 'Apply a receipt (stdin) to an outbox: prune what the receiver ran, note what it holds, report failures (exit 4 when the newest receipt reports a failing job, or a packet ran cut short)',
  builder: (y) =>
    y
      .option('outbox', outboxDir)
      .option('require-signature', {
        type: 'string',
        value: 'KEYFILE',
        array: true,
        nargs: 1,
        requiresArg: true,
        describe: 'Accept only receipts signed by a key in this public key file; repeatable',
      })
      .example('$0 outbox-apply --outbox ~/outbox < fspool-receipt-ID.rcpt', '')
      .example('ssh receiver fspool queue-receipt -q /var/q | $0 outbox-apply --outbox ~/outbox --require-signature recv.asc', '') as never,
  handler: async (a) => {
    const outbox = Outbox.open(a.outbox);
    const input = readUpTo(0, MAX_INPUT + 1);
    if (input.length > MAX_INPUT) throw new FspoolError(`stdin holds more than ${MAX_INPUT} bytes: not a receipt`);
    const { receipt: bytes } = await openReceipt(input, a['require-signature']);
    let receipt;
    try {
      receipt = decodeReceipt(bytes);
    } catch (e) {
      if (e instanceof ReceiptError) throw new FspoolError(`${e.message}; nothing applied`);
      throw e;
    }
    const r = await applyReceipt(outbox, receipt);
    for (const f of r.failures) {
      const how = f.exit_code !== null ? ` (exit status ${f.exit_code})` : '';
      const then = f.action === 'none' ? 'it stays queued and runs again' : f.action === 'quarantine' ? 'it was quarantined' : `it was settled (${f.action})`;
      print(`seq ${f.seq} failed on the receiver at ${msIso(f.ended_at)}: ${f.outcome}${how}; ${then}\n`);
    }
    for (const c of r.cutShort) {
      print(`seq ${c.seq} ran on the receiver from a copy of ${c.ran_bytes} bytes; the packet is ${c.sent_bytes} bytes: it was cut short on the way; kept, not re-sent\n`);
      log.error(
        `seq ${c.seq}: the receiver ran a copy cut short (${c.ran_bytes} of ${c.sent_bytes} bytes), so its command had part of the payload; see what it did with it, run the whole packet there by hand (${outbox.keptPath(BigInt(c.seq), c.packet)} into \`fspool stdin-process\`), then remove it from the outbox`,
      );
    }
    if (r.rewound) {
      log.warn(
        `the receiver's journal went back (position ${r.rewound.now}, ${r.rewound.was} before) in a receipt made later: its state database was restored or rolled back; the receipt was taken as the newest (on the receiver, give a restored database a new journal id: spec/receipts.md, "Which receipt is newer")`,
      );
    }
    const left = outbox.list().kept.length;
    const parts = [`acknowledged ${r.acknowledged.length} packet(s)`, `${left} unacknowledged`];
    if (r.state && r.newest) parts.push(`the receiver's next seq is ${r.state.receipt.next_seq}`);
    if (r.strange) parts.push("a receipt from a queue that knows no stream, where this stream's queue has sent receipts: not its queue's (another queue's, or one that lost its journal), so nothing of it was taken");
    else if (!r.newest) parts.push('an older receipt than the newest applied: only its acknowledgments were taken');
    log.info(parts.join('; '));
    if (r.conflicting.length > 0) {
      log.warn(`the receiver processed other packets than this outbox's at seq(s) ${rangesText(toRanges(r.conflicting))}: they are kept (see outbox-status)`);
    }
    if (r.unverifiable > 0) log.info(`${r.unverifiable} block(s) of the receipt name seqs this outbox does not know: their packets stay until a receipt can be checked`);
    if (r.foreignFailures > 0) log.info(`the receipt reports ${r.foreignFailures} failure(s) of packets that are not this outbox's`);
    // Exit 4 says there is news: the same receipt applied again (a transport retrying the
    // delivery it saw fail, as nncp-toss does) exits 0, and outbox-status still shows it.
    if ((r.failures.length > 0 && r.newest) || r.cutShort.length > 0) process.exitCode = 4;
  },
};

const rangesText = (r: Ranges) => r.map(([lo, hi]) => (lo === hi ? lo : `${lo}-${hi}`)).join(', ');

// ---------------------------------------------------------------------------------------------
// outbox-resend

interface ResendArgs {
  outbox: string;
  'to-dir'?: string;
  exec?: string;
  'older-than': number;
}

export const outboxResend: Subcommand<ResendArgs> = {
  command: 'outbox-resend',
  describe: 'Send again every unacknowledged packet the receiver is not known to hold',
  builder: (y) =>
    y
      .option('outbox', outboxDir)
      .option('to-dir', { type: 'string', value: 'DIR', requiresArg: true, describe: 'Write each packet into this directory as fspl-ID.fspl (temp name, fsync, rename)' })
      .option('exec', { type: 'string', value: 'CMD', requiresArg: true, describe: 'Run $SHELL -c CMD once per packet, with the packet on stdin' })
      .option('older-than', { type: 'string', value: 'SECONDS', helpType: 'number', requiresArg: true, default: '0', coerce: seconds('--older-than'), describe: 'Leave packets made less than SECONDS ago alone' })
      .example('$0 outbox-resend --outbox ~/outbox --exec "nncp-exec receiver fspool" --older-than 3600', '')
      .example('$0 outbox-resend --outbox ~/outbox --to-dir ~/Sync/packets', 'into a Syncthing folder') as never,
  handler: async (a) => {
    if ((a['to-dir'] === undefined) === (a.exec === undefined)) throw new UsageError('give exactly one of --to-dir DIR and --exec CMD');
    // Checked when nothing is to be sent too: a typo must not pass unseen until a packet is due.
    if (a['to-dir'] !== undefined && !statSync(a['to-dir'], { throwIfNoEntry: false })?.isDirectory()) {
      throw new FspoolError(`--to-dir ${a['to-dir']}: no such directory; create it (packets are re-sent into it)`);
    }
    const outbox = Outbox.open(a.outbox);
    const { sent, plan } = await resend(outbox, { toDir: a['to-dir'], exec: a.exec, olderThanSeconds: a['older-than'] });
    const not = [
      plan.held && `${plan.held} held by the receiver`,
      plan.passed && `${plan.passed} passed by the receiver (see outbox-status)`,
      plan.beyond && `${plan.beyond} beyond what the receipt describes`,
      plan.cutShort && `${plan.cutShort} that ran cut short on the receiver (see outbox-status)`,
      plan.recent && `${plan.recent} younger than --older-than`,
    ].filter(Boolean);
    log.info(`re-sent ${sent} packet(s)${not.length ? `; not re-sent: ${not.join(', ')}` : ''}`);
  },
};

// ---------------------------------------------------------------------------------------------
// outbox-status

interface StatusArgs {
  outbox: string;
  json: boolean;
  'stale-after': number;
}

const age = (s: number | undefined) => (s === undefined ? '-' : s < 120 ? `${Math.round(s)}s` : s < 7200 ? `${Math.round(s / 60)}min` : `${(s / 3600).toFixed(1)}h`);

export const outboxStatusCmd: Subcommand<StatusArgs> = {
  command: 'outbox-status',
  describe: 'What an outbox keeps, and what the newest receipt said about it (exit 3 when a packet is older than --stale-after)',
  builder: (y) =>
    y
      .option('outbox', outboxDir)
      .option('json', json)
      .option('stale-after', { type: 'string', value: 'SECONDS', helpType: 'number', requiresArg: true, default: '3600', coerce: seconds('--stale-after'), describe: 'Exit 3 when an unacknowledged packet is older than this' })
      .example('$0 outbox-status --outbox ~/outbox', '')
      .example('$0 outbox-status --outbox ~/outbox --stale-after 86400 >/dev/null || echo "receiver has not confirmed for a day"', '') as never,
  handler: (a) => {
    const outbox = Outbox.open(a.outbox);
    const s = outboxStatus(outbox, a['stale-after']);
    const r = s.state?.receipt;
    const seqs = s.kept.map((e) => e.seq);
    if (a.json) {
      print(
        `${toJson({
          version: 1,
          kind: 'outbox-status',
          outbox: outbox.dir,
          stream: s.stream,
          seqfile: s.seqfile,
          seqfile_next: s.seqfileNext ?? null,
          state: s.stale ? 'stale' : 'ok',
          exit_code: s.stale ? 3 : 0,
          unacked: s.kept.length,
          lowest_seq: seqs[0] ?? null,
          highest_seq: seqs.at(-1) ?? null,
          oldest_age_seconds: s.oldestAgeSeconds === undefined ? null : Math.round(s.oldestAgeSeconds),
          held: s.held.length,
          missing: s.missing.length,
          passed: toRanges(s.passed).map(([lo, hi]) => ({ from: BigInt(lo), to: BigInt(hi) })),
          beyond: s.beyond.length,
          unfinished: s.unfinished.map((e) => e.seq),
          conflicts: (s.state?.conflicts ?? []).map(([lo, hi]) => ({ from: BigInt(lo), to: BigInt(hi) })),
          cut_short: s.cutShort.map((c) => ({ ...c, seq: BigInt(c.seq) })),
          last_receipt: r
            ? {
                created: msIso(r.created),
                applied_at: msIso(r.applied_at),
                next_seq: BigInt(r.next_seq),
                window_start: BigInt(r.window_start),
                unreadable: r.unreadable,
                ambiguous: r.ambiguous,
              }
            : null,
          last_apply: s.state ? { at: msIso(s.state.last_apply.at), acknowledged: s.state.last_apply.acknowledged } : null,
          failures: (s.state?.failures ?? []).map((f) => ({ ...f, seq: BigInt(f.seq), ended_at: msIso(f.ended_at) })),
        })}\n`,
      );
    } else {
      const out: string[] = [];
      const row = (k: string, v: string) => out.push(`${`${k}:`.padEnd(14)}${v}`);
      row('outbox', outbox.dir);
      row('stream', s.stream);
      row('seqfile', `${s.seqfile} (next ${s.seqfileNext ?? '-'})`);
      row('state', s.stale ? `stale - a packet has waited ${age(s.oldestAgeSeconds)} for its receipt` : 'ok');
      row('unacked', seqs.length === 0 ? '0' : `${seqs.length} (seqs ${seqs[0]} to ${seqs.at(-1)}, the oldest made ${age(s.oldestAgeSeconds)} ago)`);
      if (r) {
        row('held', String(s.held.length));
        row('missing', `${s.missing.length}${s.missing.length ? ` (${rangesText(toRanges(s.missing))})` : ''}`);
        if (s.beyond.length) row('beyond', `${s.beyond.length} (not described by the receipt; sent when it is)`);
        if (s.passed.length) row('passed', `${rangesText(toRanges(s.passed))}: the receiver is past these seqs without a record of running them; they are not re-sent`);
        if (s.state?.conflicts.length) row('conflicts', `${rangesText(s.state.conflicts)}: the receiver has other packets at these seqs`);
        for (const c of s.cutShort) row('cut short', `seq ${c.seq}: ran on the receiver from ${c.ran_bytes} of its ${c.sent_bytes} bytes; kept, not re-sent (run it there by hand, then remove it)`);
        row('receipt', `made ${msIso(r.created)}, applied ${msIso(r.applied_at)}; receiver next seq ${r.next_seq}${r.unreadable ? `, ${r.unreadable} unreadable file(s)` : ''}`);
      } else row('receipt', 'none applied yet: every unacknowledged packet counts as missing');
      if (s.unfinished.length) row('unfinished', `${s.unfinished.map((e) => e.seq).join(', ')} (left by a prepare that did not finish; the next outbox command settles them)`);
      for (const f of s.state?.failures ?? []) row('failed', `seq ${f.seq}: ${f.outcome}${f.exit_code !== null ? ` (exit status ${f.exit_code})` : ''}, ${f.action === 'none' ? 'held, runs again' : f.action}, at ${msIso(f.ended_at)}`);
      print(`${out.join('\n')}\n`);
    }
    process.exitCode = s.stale ? 3 : 0;
  },
};

/** For other commands' use of `--outbox DIR` with a seqfile. */
export function outboxFor(dir: string | undefined, seqfile: string): Outbox | undefined {
  return dir === undefined ? undefined : Outbox.forSeqfile(dir, seqfile);
}
