// queue-clean: remove job files that can never run again (seq below nextseq), under the queue
// lock like every removal of job files (spec/locking.md).
//
// By default only files the journal knows were processed successfully (stale copies of a
// packet that ran: delivered twice, kept by --never-delete, or left by a crash after nextseq
// was written). A stale file the journal does not know as done (it failed under leave, fspl ran
// it, nextseq was set past it) may hold data that never ran: it is removed only with --stale.
import type { DecodeContext } from '../codec/decode.js';
import { unlinkSync } from 'node:fs';
import { crashPoint } from '../sys/crashPoint.js';
import { fsyncDir } from '../sys/durable.js';
import { type Journal, packetId, type RunRow } from './journal.js';
import type { Queue } from './queue.js';

export interface CleanOptions {
  /** Also remove stale files the journal does not know as processed. */
  stale: boolean;
  dryRun: boolean;
  decode: DecodeContext;
}

export interface Cleaned {
  name: string;
  path: string;
  seq: bigint;
  /** The successful run of this packet, if the journal has one. */
  processed: RunRow | undefined;
  removed: boolean;
}

/** The caller holds the queue lock. */
export async function cleanQueue(queue: Queue, journal: Journal, opts: CleanOptions): Promise<Cleaned[]> {
  const next = queue.nextseq.read();
  const jobs = await queue.scan(opts.decode);
  const succeeded = journal.succeededPackets();
  const out: Cleaned[] = [];
  for (const j of jobs) {
    if (!j.header || j.header.seq >= next) continue;
    const processed = succeeded.get(packetId(j.header));
    const removed = (processed !== undefined || opts.stale) && !opts.dryRun;
    out.push({ name: j.name, path: j.path, seq: j.header.seq, processed, removed });
  }
  out.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : a.name < b.name ? -1 : 1));
  let any = false;
  for (const c of out) {
    if (!c.removed) continue;
    try {
      unlinkSync(c.path);
      any = true;
      crashPoint('cleaning');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  if (any) fsyncDir(queue.jobsDir);
  return out;
}
