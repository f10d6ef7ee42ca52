// Attaching fspool's state (QUEUE/fspool/state.db) to a queue for one command: the header
// cache for its scans and the journal. Where the database cannot be had, the command goes on
// as before (spec/state-db.md, "Without the database").
import { existsSync } from 'node:fs';
import { HeaderIndex } from './headerIndex.js';
import { Journal } from './journal.js';
import type { Queue } from './queue.js';
import { StateDb, stateDir } from './stateDb.js';

export interface QueueState {
  db: StateDb | undefined;
  journal: Journal;
  close(): void;
}

/** How long a command waits for another writer of the database before going on without it. */
export const PROCESSOR_BUSY_MS = 2000;
export const READER_BUSY_MS = 1000;

export interface AttachOptions {
  /** Create the database when missing (a queue made by fspl gets one on first use). */
  create: boolean;
  busyMs: number;
  /** What going on without it means, for the WARN line. */
  without: string;
  /** Use the header cache for this queue's scans. */
  cacheHeaders: boolean;
  /** The command only reads, and ends soon: read the database through a mapping. */
  mapped?: boolean;
  /** Trying again after a failure already reported: a new failure is not reported again. */
  quiet?: boolean;
}

export function attachState(queue: Queue, opts: AttachOptions): QueueState {
  // An append-only queue is usually synced elsewhere as a whole: fspool adds nothing to it
  // unless someone made QUEUE/fspool/ there (then its header cache serves queue-ls).
  const appendOnly = !existsSync(queue.nextseq.path);
  const create = opts.create && (!appendOnly || existsSync(stateDir(queue.dir)));
  const db = StateDb.open(queue.dir, { create, busyMs: opts.busyMs, without: opts.without, mapped: opts.mapped, quiet: opts.quiet });
  const index = db && opts.cacheHeaders ? new HeaderIndex(db) : undefined;
  if (index) queue.headerIndex = index;
  return {
    db,
    journal: new Journal(db),
    close: () => {
      if (queue.headerIndex === index) queue.headerIndex = undefined;
      db?.close();
    },
  };
}
