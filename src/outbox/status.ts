// outbox-status: what the outbox holds and what the newest receipt said about it.
// Takes no lock: every change to an outbox is a rename, link or unlink.
import { statSync } from 'node:fs';
import { type Entry, inRanges, type Outbox, type OutboxState } from './outbox.js';

export interface OutboxStatus {
  stream: string;
  seqfile: string;
  /** The seqfile's next number, if it exists. */
  seqfileNext: bigint | undefined;
  kept: Entry[];
  oldestAgeSeconds: number | undefined;
  held: bigint[];
  missing: bigint[];
  passed: bigint[];
  /** Beyond the receipt's held facts, with packets held there: not re-sent yet. */
  beyond: bigint[];
  /** Ran on the receiver from a copy cut short (state.json's cut_short): not re-sent. */
  cutShort: bigint[];
  unfinished: Entry[];
  markers: number;
  state: OutboxState | undefined;
  stale: boolean;
}

export function outboxStatus(outbox: Outbox, staleAfterSeconds: number, now = Date.now()): OutboxStatus {
  const l = outbox.list();
  const s = outbox.readState();
  const held: bigint[] = [];
  const missing: bigint[] = [];
  const passed: bigint[] = [];
  const beyond: bigint[] = [];
  const cutShort: bigint[] = [];
  const cut = new Set((s?.cut_short ?? []).map((c) => `${c.seq}-${c.packet}`));
  let oldest: number | undefined;
  const kept: Entry[] = [];
  for (const e of l.kept) {
    const mtime = statSync(outbox.packetPath(e), { throwIfNoEntry: false })?.mtimeMs;
    if (mtime === undefined) continue; // acknowledged while we looked
    kept.push(e);
    oldest = oldest === undefined ? mtime : Math.min(oldest, mtime);
    if (cut.has(`${e.seq}-${e.id}`)) cutShort.push(e.seq);
    else if (s && inRanges(s.held, e.seq)) held.push(e.seq);
    else if (s && inRanges(s.passed, e.seq)) passed.push(e.seq);
    else if (s?.receipt.held_beyond && e.seq >= BigInt(s.receipt.held_end)) beyond.push(e.seq);
    else missing.push(e.seq);
  }
  const oldestAgeSeconds = oldest === undefined ? undefined : Math.max(0, (now - oldest) / 1000);
  return {
    stream: outbox.stream,
    seqfile: outbox.config.seqfile,
    seqfileNext: outbox.seqfileNext(),
    kept,
    oldestAgeSeconds,
    held,
    missing,
    passed,
    beyond,
    cutShort,
    unfinished: l.pending,
    markers: l.acked.length,
    state: s,
    stale: oldestAgeSeconds !== undefined && oldestAgeSeconds > staleAfterSeconds,
  };
}
