// queue-clean: remove job files that can never run again (seq below nextseq), under the queue
// lock like every removal of job files (spec/locking.md).
//
// What is removed depends on what the journal knows of each file's packet:
// - processed (it succeeded: a copy delivered twice, kept by --never-delete, left by a crash
//   after nextseq was written): always;
// - ran (it failed and the queue moved past it under delete, leave or quarantine, or its
//   outcome went unrecorded): with --stale;
// - never ran here (nothing accounts for it: its sender may have restarted its numbering, or
//   nextseq was set past it; without a journal nothing is known): only with --stale --force,
//   since it may hold data that was never applied.
import type { DecodeContext } from '../codec/decode.js';
import { unlinkSync } from 'node:fs';
import { crashPoint } from '../sys/crashPoint.js';
import { fsyncDir } from '../sys/durable.js';
import { stillNames } from './jobfile.js';
import { asOwner, foreignOwner } from './owner.js';
import { type Journal, packetId, type RunRow } from './journal.js';
import type { Queue } from './queue.js';
import { staleJobs } from './status.js';

export interface CleanOptions {
  /** Also remove stale files whose packet ran and failed. */
  stale: boolean;
  /** With `stale`: also files whose packet never ran here. */
  force: boolean;
  dryRun: boolean;
  decode: DecodeContext;
}

export type StaleKind = 'processed' | 'ran' | 'never-ran';

export interface Cleaned {
  name: string;
  path: string;
  seq: bigint;
  kind: StaleKind;
  /** The run that accounts for the packet (its success, or its last finished run). */
  run: RunRow | undefined;
  /** Removed (or, with --dry-run, would be). */
  removed: boolean;
  /** Not removed: the file changed since it was judged (renamed over, or jobs/ swapped). */
  changed?: boolean;
}

/** The caller holds the queue lock. */
export async function cleanQueue(queue: Queue, journal: Journal, opts: CleanOptions): Promise<Cleaned[]> {
  const next = queue.nextseq.read();
  const scanned = await queue.scan(opts.decode);
  const identities = new Map(scanned.map((j) => [j.name, j.identity]));
  const jobs = scanned.flatMap((j) => (j.header ? [{ name: j.name, path: j.path, header: j.header, packet: packetId(j.header) }] : []));
  const out: Cleaned[] = staleJobs(jobs, next, journal).map((f) => {
    const kind: StaleKind = f.processed ? 'processed' : f.ran ? 'ran' : 'never-ran';
    const removed = kind === 'processed' || (opts.stale && (kind === 'ran' || opts.force));
    return { name: f.name, path: f.path, seq: f.header.seq, kind, run: f.processed ?? f.ran, removed };
  });
  out.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : a.name < b.name ? -1 : 1));
  if (opts.dryRun) return out;
  let any = false;
  const owner = foreignOwner(queue.dir);
  for (const c of out) {
    if (!c.removed) continue;
    // Only the file that was judged: not one renamed over it since, nor one a jobs/ made a
    // symlink since leads to.
    const identity = identities.get(c.name);
    if (!identity || !stillNames(c.path, identity)) {
      c.removed = false;
      c.changed = true;
      continue;
    }
    try {
      // As the queue's owner, where root works in another user's queue (see removeJobFiles).
      asOwner(owner, () => unlinkSync(c.path));
      any = true;
      crashPoint('cleaning');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  if (any) fsyncDir(queue.jobsDir);
  return out;
}
