// outbox-apply: what a receipt proves, checked against the outbox's own packets
// (spec/receipts.md, "What a receipt says"). Only processed blocks whose digest matches the
// identities the outbox knows prune anything; everything else a receipt says can at worst
// delay pruning or cause a harmless re-send.
import { closeSync, fstatSync, openSync, readSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { FspoolError } from '../errors.js';
import { MAGIC } from '../packet/codec.js';
import { blockDigest, NO_STREAM, type Receipt, type ReceiptBlock, type Section, seqsOf } from '../packet/receipt.js';
import { crashPoint } from '../sys/crashPoint.js';
import { fsyncDir } from '../sys/durable.js';
import { openAsIs } from '../sys/fd.js';
import { type CutShortJson, type Entry, entryName, type FailureJson, type Outbox, type OutboxState, toRanges } from './outbox.js';

export interface ApplyResult {
  acknowledged: Entry[];
  /** The receipt was newer than the newest applied: its transient facts were taken. */
  newest: boolean;
  /**
   * The receipt knows no stream, and one that knows ours was applied before: it is not our
   * queue's (another queue's, or ours that lost its journal), so its facts were not taken.
   */
  strange: boolean;
  /** Processed blocks with our packets that listed seqs we cannot name (not verifiable). */
  unverifiable: number;
  /** Blocks whose identities differ from ours: the receiver has other packets there. */
  conflicting: bigint[];
  /** Failures the receipt reports of this outbox's packets. */
  failures: FailureJson[];
  /** Failures the receipt reports of packets this outbox does not know. */
  foreignFailures: number;
  /** Plain packets the receiver ran from a copy of another size, not known before this receipt. */
  cutShort: CutShortJson[];
  /** The receipt was taken as the newest although its journal's position went back (a restore). */
  rewound: { was: bigint; now: bigint } | undefined;
  state: OutboxState | undefined;
}

type Known = Map<bigint, string>;

/**
 * How far ahead of the sender's clock the newest receipt may be and still order later ones:
 * clocks kept by NTP differ by far less. One stamped further ahead (a wrong clock, a forgery)
 * orders nothing: the next receipt is taken whatever its stamp, so a forged one can hold back
 * genuine receipts' facts for this long at most.
 */
const FUTURE_TOLERANCE_MS = 10 * 60 * 1000;

/** Does the block's digest match the identities we know for its listed seqs? */
function verify(section: Section, stream: string, b: ReceiptBlock, known: Known): 'match' | 'unknown' | 'mismatch' {
  const seqs = seqsOf(b);
  const ids: string[] = [];
  for (const s of seqs) {
    const id = known.get(s);
    if (id === undefined) return 'unknown';
    ids.push(id);
  }
  return blockDigest(section, stream, b.index, b.mask, ids).equals(b.digest) ? 'match' : 'mismatch';
}

/**
 * The size of a kept packet, if it is a plain one (it starts with fspl's magic): only then is it
 * the size of the job file the receiver runs. An encoded packet may be encoded again on the way
 * (gzip outside fspool) and checks its own length when it is decoded.
 */
function plainSize(path: string): number | undefined {
  let fd: number;
  try {
    fd = openAsIs(path);
  } catch {
    return undefined;
  }
  try {
    const head = Buffer.alloc(MAGIC.length);
    return readSync(fd, head, 0, head.length, 0) === head.length && head.equals(MAGIC) ? fstatSync(fd).size : undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Whether `r` describes the receiver's queue later than the newest receipt applied
 * (spec/receipts.md, "Which receipt is newer"): 'rewound' when it does although its journal's
 * position went back. Of one journal, the position decides, whatever the receiver's clock said
 * (it may have been set back), and the time only between equals; but a position gone back in a
 * receipt made well after (beyond the clock tolerance) is a database restored or rolled back,
 * whose receipts would otherwise look old until it passed where it was, maybe never (a queue
 * waiting at a gap writes little). Otherwise the time decides, unless the newest was stamped far
 * ahead of our clock: a receiver whose clock is wrong, or a forgery, must not make every later
 * receipt look old for good.
 */
function isNewer(r: Receipt, old: OutboxState['receipt'], now: number): boolean | 'rewound' {
  if (r.journal !== NO_STREAM && old.journal === r.journal) {
    const was = BigInt(old.position ?? '0');
    if (r.position > was || (r.position === was && r.created > old.created)) return true;
    return r.position < was && r.created > old.created + FUTURE_TOLERANCE_MS ? 'rewound' : false;
  }
  return r.created > old.created || old.created > now + FUTURE_TOLERANCE_MS;
}

export async function applyReceipt(outbox: Outbox, r: Receipt, now = Date.now()): Promise<ApplyResult> {
  if (r.stream !== NO_STREAM && r.stream !== outbox.stream) {
    throw new FspoolError(
      `the receipt is about stream ${r.stream}, and outbox ${outbox.dir} sends stream ${outbox.stream}: nothing applied (apply it to that stream's outbox)`,
    );
  }
  const lock = await outbox.lock(60);
  try {
    outbox.tidy();
    const l = outbox.list();
    const kept = new Map(l.kept.map((e) => [e.seq, e]));
    const known: Known = new Map([...l.acked, ...l.kept].map((e) => [e.seq, e.id]));
    const stream = outbox.stream;

    const acknowledged: Entry[] = [];
    const conflicting: bigint[] = [];
    const cutShort: CutShortJson[] = [];
    let unverifiable = 0;
    // Whether the receipt shows it is from a queue that runs our stream at our seqs: a processed
    // block whose identities are ours (kept, or acknowledged and still marked), or that holds
    // other packets at seqs we keep (which it ran instead: said as a conflict).
    let proven = false;
    for (const b of r.processed) {
      const mine = seqsOf(b).filter((s) => kept.has(s));
      const v = verify('P', stream, b, known);
      if (v === 'match') proven = true;
      if (mine.length === 0) continue;
      if (v === 'match') {
        for (const s of mine) {
          const e = kept.get(s)!;
          // The same packet, as far as its header tells: a plain one must also have run whole.
          const ran = r.sizes.get(s);
          const sent = ran === undefined ? undefined : plainSize(outbox.packetPath(e));
          if (sent !== undefined && sent !== ran) cutShort.push({ seq: String(s), packet: e.id, sent_bytes: sent, ran_bytes: ran! });
          else acknowledged.push(e);
        }
      } else if (v === 'unknown') unverifiable++;
      else {
        conflicting.push(...mine);
        proven = true;
      }
    }
    const ackedSeqs = new Set(acknowledged.map((e) => e.seq));
    const stillKept = l.kept.filter((e) => !ackedSeqs.has(e.seq));

    const old = outbox.readState();
    // What earlier receipts found cut short stays said while its packet is kept (a receipt
    // whose window has moved on no longer lists it); what this one finds is news if not said.
    const keptIds = new Map(stillKept.map((e) => [e.seq, e.id]));
    const wasCut = (old?.cut_short ?? []).filter((c) => keptIds.get(BigInt(c.seq)) === c.packet);
    const newCut = cutShort.filter((c) => !wasCut.some((w) => w.seq === c.seq && w.packet === c.packet && w.ran_bytes === c.ran_bytes));
    const allCut = [...wasCut.filter((w) => !newCut.some((c) => c.seq === w.seq)), ...newCut].sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1));
    const cutSeqs = new Set(allCut.map((c) => BigInt(c.seq)));
    // A receipt that knows no stream says nothing of ours once one that does came: taken as the
    // newest, it would hide the failures and the held packets the real one reported.
    const strange = r.stream === NO_STREAM && old?.receipt.stream === stream;
    const later = strange || old === undefined ? !strange : isNewer(r, old.receipt, now);
    const newest = later !== false;
    const rewound = later === 'rewound' ? { was: BigInt(old!.receipt.position!), now: r.position } : undefined;
    const failures: FailureJson[] = [];
    let foreignFailures = 0;
    for (const f of r.failures) {
      if (known.get(f.seq) !== f.packet) {
        foreignFailures++;
        continue;
      }
      failures.push({ seq: String(f.seq), packet: f.packet, outcome: f.outcome, action: f.action, exit_code: f.exitCode, ended_at: f.endedAt });
    }
    let state: OutboxState | undefined = old;
    if (newest) {
      const held: bigint[] = [];
      for (const b of r.held) {
        const mine = seqsOf(b).filter((s) => kept.has(s) && !ackedSeqs.has(s));
        if (mine.length > 0 && verify('H', stream, b, known) === 'match') held.push(...mine);
      }
      // That a queue moved past our seqs says something of them only if it is our stream's queue:
      // one that proves it ran our packets. Another queue's next seq (one that knows no stream,
      // or where a file dropped into its jobs/ names ours) would stop the re-sending of packets
      // ours never ran.
      const passed = proven ? stillKept.filter((e) => e.seq >= r.windowStart && e.seq < r.nextSeq && !cutSeqs.has(e.seq)).map((e) => e.seq) : [];
      state = {
        version: 1,
        receipt: {
          stream: r.stream,
          created: r.created,
          applied_at: now,
          next_seq: String(r.nextSeq),
          window_start: String(r.windowStart),
          held_end: String(r.heldEnd),
          held_beyond: r.heldBeyond,
          unreadable: r.unreadable,
          ambiguous: r.ambiguous,
          ...(r.journal !== NO_STREAM ? { journal: r.journal, position: String(r.position) } : {}),
        },
        held: toRanges(held),
        passed: toRanges(passed),
        conflicts: toRanges(conflicting),
        failures,
        last_apply: { at: now, acknowledged: acknowledged.length },
      };
    } else if (old) {
      state = { ...old, last_apply: { at: now, acknowledged: acknowledged.length } };
    }
    if (state) {
      if (allCut.length > 0) state.cut_short = allCut;
      else delete state.cut_short;
    }

    // Markers first (durably), then the packets: a crash in between leaves both, which counts
    // as acknowledged (Outbox.list, tidy).
    if (acknowledged.length > 0) {
      for (const e of acknowledged) {
        const marker = join(outbox.ackedDir, entryName(e.seq, e.id));
        try {
          closeSync(openSync(marker, 'wx', 0o644));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
      }
      fsyncDir(outbox.ackedDir);
      crashPoint('outbox-acked-marked');
      for (const e of acknowledged) {
        try {
          unlinkSync(outbox.packetPath(e));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
      fsyncDir(outbox.packetsDir);
    }
    crashPoint('outbox-pruned');
    if (state) outbox.writeState(state);
    crashPoint('outbox-recorded');
    outbox.dropClosedMarkers(outbox.list());
    return { acknowledged, newest, strange, unverifiable, conflicting, failures, foreignFailures, cutShort: newCut, rewound, state };
  } finally {
    lock.release();
  }
}
