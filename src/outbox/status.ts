// outbox-status: what the outbox holds and what the newest receipt said about it.
// Takes no lock: every change to an outbox is a rename, link or unlink.
import { statSync } from 'node:fs';
import { type CutShortJson, type Entry, type Outbox, type OutboxState, standing } from './outbox.js';

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
  /** Kept packets that ran on the receiver from a copy cut short (state.json's cut_short): not re-sent. */
  cutShort: CutShortJson[];
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
  const by = { held, passed, beyond, missing };
  let oldest: number | undefined;
  const kept: Entry[] = [];
  for (const e of l.kept) {
    const mtime = statSync(outbox.packetPath(e), { throwIfNoEntry: false })?.mtimeMs;
    if (mtime === undefined) continue; // acknowledged while we looked
    kept.push(e);
    oldest = oldest === undefined ? mtime : Math.min(oldest, mtime);
    const at = standing(e, s);
    if (at !== 'cut-short') by[at].push(e.seq);
  }
  const cutShort = (s?.cut_short ?? []).filter((c) => kept.some((e) => e.seq === BigInt(c.seq) && e.id === c.packet));
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
