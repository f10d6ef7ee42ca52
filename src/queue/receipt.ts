// The receiver's side of receipts (spec/receipts.md): what a queue holds and what its journal
// says it ran, for one stream, as a Receipt (src/packet/receipt.ts). A reader: no lock. The
// facts come from nextseq, jobs/ (through the header cache) and the journal's runs.
import type { DecodeContext } from '../codec/decode.js';
import { FspoolError } from '../errors.js';
import { type Header, U64_MAX } from '../packet/header.js';
import { packetId } from '../packet/identity.js';
import { BLOCK, blocksOf, FAILURE_ACTIONS, FAILURE_OUTCOMES, type FailureAction, type FailureOutcome, MAX_FAILURES, NO_STREAM, type Receipt, type ReceiptFailure } from '../packet/receipt.js';
import { COMMITTING, FAILURES, Journal, type JournalOutcome } from './journal.js';
import type { Queue, ScannedJob } from './queue.js';
import type { StateDb } from './stateDb.js';

/** Processed facts reach this far below the next seq (rounded down to a block). */
export const PROCESSED_WINDOW = 4096n;
/** Held facts reach this far from the next seq. */
export const HELD_SPAN = 16384n;

type Held = ScannedJob & { header: Header };

/** What one look at the queue found, shared by the receipts of every stream in it. */
export interface QueueFacts {
  nextSeq: bigint;
  jobs: Held[];
  unreadable: number;
  /** Streams of the queue's packets and recent runs, the most recently active first. */
  streams: string[];
  /**
   * Streams of the journal's recent runs that ran a receiver (not refusals), the latest first:
   * streams some packet was processed from, where a file in jobs/ may name any stream.
   */
  ran: string[];
  /** The journal's id (NO_STREAM's zeros: none) and its position before anything else was read. */
  journal: string;
  position: bigint;
}

/**
 * Receipts a pass makes at most. Whoever can drop files in jobs/ names any stream in them: a
 * thousand files of a thousand made-up streams must not become a thousand receipts (each a
 * transfer, with --receipt-exec) at every pass, and a pass's work stays bounded. A queue
 * serves one sender's stream, or a few over time.
 */
export const MAX_STREAMS = 16;

/**
 * The streams to make receipts for, at most MAX_STREAMS, the likeliest real first: those a
 * packet was processed from (latest first), then those with a packet held in the window (the
 * one nearest the due seq first), then any other the queue's files name.
 */
export function receiptStreams(facts: QueueFacts): string[] {
  const heldEnd = facts.nextSeq + HELD_SPAN;
  const nearest = new Map<string, bigint>();
  for (const j of facts.jobs) {
    const { stream, seq } = j.header;
    if (stream === undefined || seq < facts.nextSeq || seq >= heldEnd) continue;
    const had = nearest.get(stream);
    if (had === undefined || seq < had) nearest.set(stream, seq);
  }
  const held = [...nearest].sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)).map(([s]) => s);
  return [...new Set([...facts.ran, ...held, ...facts.streams])].slice(0, MAX_STREAMS);
}

interface RunFact {
  seq: string;
  packet: string;
  outcome: JournalOutcome;
  exit_code: number | null;
  action: string | null;
  ended_at: number | null;
  commit_state: string | null;
  order_by: string;
  attempt: number;
  file_size: number | null;
}

/** Read the queue once: nextseq, the readable packets, and which streams it knows. */
export async function lookAtQueue(queue: Queue, db: StateDb | undefined, ctx: DecodeContext): Promise<QueueFacts> {
  queue.check();
  // The position first: whatever is read after it is at least as new, so a receipt never
  // claims to be further on than what it says.
  let journal = NO_STREAM;
  let position = 0n;
  if (db && db.schema >= 3) {
    db.read((tx) => {
      const id = tx.stmt("SELECT value FROM meta WHERE key = 'journal'").pluck().get();
      if (typeof id !== 'string' || !/^[0-9a-f]{32}$/.test(id)) return;
      const at = tx.stmt("SELECT value FROM meta WHERE key = 'position'").pluck().get();
      journal = id;
      position = typeof at === 'number' && Number.isSafeInteger(at) && at > 0 ? BigInt(at) : 0n;
    });
  }
  const nextSeq = queue.nextseq.readIfExists();
  if (nextSeq === undefined) throw new FspoolError(`${queue.dir} has no nextseq: it is an append-only queue, which runs nothing and so has nothing to report`);
  const scanned = await queue.scan(ctx);
  const readableJobs = scanned.filter((j): j is Held => j.header !== undefined);
  // A file the processor refused (its signature missing or wrong under --require-signature) is
  // not held: its header is anyone's, and a forged copy of a signed packet would otherwise be
  // claimed as held, and the sender stop re-sending the real one. Refused until it changes.
  const refused = new Journal(db).stillRefused(readableJobs.map((j) => ({ name: j.name, packet: packetId(j.header), identity: j.identity })));
  const jobs = readableJobs.filter((j) => !refused.has(j.name));
  const order = new Map<string, bigint>();
  // The highest seq held first, then the journal's latest runs.
  for (const j of [...jobs].sort((a, b) => (a.header.seq > b.header.seq ? -1 : 1))) {
    const s = j.header.stream;
    if (s !== undefined && !order.has(s)) order.set(s, j.header.seq);
  }
  // The latest rows by id range, not runs_stream (which `stream IS NOT NULL` would pick, and
  // then walk every run of every stream the queue ever had): the unary + keeps that a filter.
  const recent =
    db?.read((tx) =>
      tx
        .stmt(
          `SELECT stream, max(id) AS last, max(CASE WHEN outcome = 'refused' THEN 0 ELSE id END) AS ran FROM runs
           WHERE +stream IS NOT NULL AND id > (SELECT coalesce(max(id), 0) FROM runs) - ? GROUP BY stream ORDER BY last DESC`,
        )
        .all(Number(PROCESSED_WINDOW)) as Array<{ stream: string; ran: number }>,
    ) ?? [];
  for (const r of recent) if (!order.has(r.stream)) order.set(r.stream, -1n);
  const ran = recent.filter((r) => r.ran > 0).sort((a, b) => b.ran - a.ran).map((r) => r.stream);
  return { nextSeq, jobs, unreadable: scanned.length - readableJobs.length, streams: [...order.keys()], ran, journal, position };
}

const outcomeCode = (o: JournalOutcome): FailureOutcome => ((FAILURE_OUTCOMES as readonly string[]).includes(o) ? (o as FailureOutcome) : 'other');
const actionCode = (a: string | null): FailureAction => ((FAILURE_ACTIONS as readonly string[]).includes(a ?? '') ? (a as FailureAction) : 'none');

/** The receipt about one stream (NO_STREAM: a queue whose packets carry none). */
export function receiptFor(facts: QueueFacts, db: StateDb | undefined, stream: string, now = Date.now()): Receipt {
  const n = facts.nextSeq;
  const windowStart = n > PROCESSED_WINDOW ? ((n - PROCESSED_WINDOW) / BLOCK) * BLOCK : 0n;
  const heldEnd = n + HELD_SPAN > U64_MAX ? U64_MAX : n + HELD_SPAN;
  const mine = stream === NO_STREAM ? [] : facts.jobs.filter((j) => j.header.stream === stream);

  // Held: one identity per seq; a seq held by two different packets of the stream is ambiguous.
  const heldIds = new Map<bigint, string>();
  const ambiguous = new Set<bigint>();
  let heldBeyond = false;
  for (const j of mine) {
    const seq = j.header.seq;
    if (seq < n) continue;
    if (seq >= heldEnd) {
      heldBeyond = true;
      continue;
    }
    const id = packetId(j.header);
    const had = heldIds.get(seq);
    if (had !== undefined && had !== id) ambiguous.add(seq);
    else heldIds.set(seq, id);
  }
  for (const s of ambiguous) heldIds.delete(s);

  // Processed: the latest settled run per seq from the window up; failures: the latest
  // finished run per seq, when it failed (and, if not settled, only while the job is held).
  const processedIds = new Map<bigint, string>();
  const sizes = new Map<bigint, number>();
  const failures: ReceiptFailure[] = [];
  if (db && stream !== NO_STREAM) {
    // A database of an older schema, that can only be read, has no sizes: not measured.
    const fileSize = db.schema >= 3 ? 'file_size' : 'NULL AS file_size';
    db.read((tx) => {
      const settled = new Set<bigint>();
      const finished = new Set<bigint>();
      for (const r of tx
        .stmt(`SELECT seq, packet, outcome, exit_code, action, ended_at, commit_state, order_by, attempt, ${fileSize} FROM runs WHERE stream = ? ORDER BY id DESC`)
        .iterate(stream) as IterableIterator<RunFact>) {
        const seq = BigInt(r.seq);
        // Runs come newest first, and a queue runs its seqs upwards in sequence order: the first
        // such run below the window ends the look (a queue set back below it has run its seqs
        // again since). A job released from quarantine runs out of turn: passed over.
        if (seq < windowStart) {
          if (r.order_by === 'sequence' && r.attempt > 0) break;
          continue;
        }
        if (r.commit_state !== null && COMMITTING.includes(r.action as never) && !settled.has(seq)) {
          settled.add(seq);
          processedIds.set(seq, r.packet);
          if (r.file_size !== null && r.file_size > 0) sizes.set(seq, r.file_size);
        }
        if (r.ended_at !== null && !['running', 'crashed', 'interrupted', 'unrecorded'].includes(r.outcome) && !finished.has(seq)) {
          finished.add(seq);
          const settledHere = r.commit_state !== null;
          if (FAILURES.includes(r.outcome) && (settledHere || seq >= n) && failures.length < MAX_FAILURES) {
            failures.push({
              seq,
              packet: r.packet,
              outcome: outcomeCode(r.outcome),
              action: settledHere ? actionCode(r.action) : 'none',
              exitCode: r.exit_code,
              endedAt: r.ended_at,
            });
          }
        }
      }
      // Stale copies of the stream's packets below the window: re-sent by a sender that could
      // not be told they ran. Vouch for those the journal knows as settled.
      // The latest such run: its file's size is the one the packet ran with.
      const byPacket = tx.stmt(
        `SELECT seq, ${fileSize} FROM runs WHERE packet = ? AND commit_state IS NOT NULL AND action IN ('delete', 'keep', 'quarantine') ORDER BY id DESC LIMIT 1`,
      );
      for (const j of mine) {
        if (j.header.seq >= windowStart || processedIds.has(j.header.seq)) continue;
        const id = packetId(j.header);
        const row = byPacket.get(id) as { seq: string; file_size: number | null } | undefined;
        if (!row || BigInt(row.seq) !== j.header.seq) continue;
        processedIds.set(j.header.seq, id);
        if (row.file_size !== null && row.file_size > 0) sizes.set(j.header.seq, row.file_size);
      }
    });
  }
  failures.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
  return {
    stream,
    created: now,
    nextSeq: n,
    windowStart,
    heldEnd,
    heldBeyond,
    unreadable: facts.unreadable,
    ambiguous: ambiguous.size,
    processed: blocksOf('P', stream, processedIds),
    held: blocksOf('H', stream, heldIds),
    failures,
    sizes,
    journal: facts.journal,
    position: facts.position,
  };
}
