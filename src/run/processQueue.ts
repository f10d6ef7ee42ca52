// queue-process: one queue processed by one QueueProcessor (processor.ts), with this process's
// SIGINT, SIGTERM and SIGHUP given to it (stop.ts).
import type { Queue } from '../queue/queue.js';
import { runContext } from './context.js';
import { type ProcessOptions, QueueProcessor } from './processor.js';
import { listenForSignals } from './stop.js';

export type { OnError } from './policy.js';
export type { OrderBy, ProcessOptions } from './processor.js';

export async function processQueue(queue: Queue, opts: ProcessOptions & { stopTimeoutSeconds?: number }): Promise<number> {
  const ctx = runContext({ stopTimeoutSeconds: opts.stopTimeoutSeconds, graceSeconds: opts.graceSeconds });
  const unlisten = listenForSignals((sig) => ctx.stop.receive(sig));
  try {
    return await new QueueProcessor(queue, opts, ctx).run();
  } finally {
    unlisten();
    ctx.stop.dispose();
  }
}
