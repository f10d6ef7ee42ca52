// A queue's status as queue-status computes it (src/queue/status.ts), read the way a reader
// reads: the queue's files, its journal, /proc/locks, no lock taken. queue-status, serve's
// metrics and `fspool status` all come through here, so that they cannot disagree.
import type { DecodeContext } from '../codec/decode.js';
import { Queue } from '../queue/queue.js';
import { attachState, READER_BUSY_MS } from '../queue/state.js';
import { queueStatus, type Status } from '../queue/status.js';

export const READER_WITHOUT = 'going on without it: reading every file, no journal to show';

export interface StatusRead {
  queue: Queue;
  status: Status;
}

/**
 * The status of the queue in `dir` now; throws when it is no queue, or cannot be read. `quiet`:
 * a state database that cannot be used was reported already. `busyMs`: how long to wait for
 * another writer of the header cache (the wait blocks the caller's event loop).
 */
export async function readStatus(dir: string, decode: DecodeContext, stalledAfterSeconds: number, opts: { quiet?: boolean; busyMs?: number } = {}): Promise<StatusRead> {
  const queue = new Queue(dir).check();
  const state = attachState(queue, { create: true, busyMs: opts.busyMs ?? READER_BUSY_MS, cacheHeaders: true, without: READER_WITHOUT, quiet: opts.quiet });
  try {
    const jobs = await queue.scan(decode);
    return { queue, status: queueStatus(queue, jobs, state.journal, { stalledAfterSeconds }) };
  } finally {
    state.close();
  }
}
