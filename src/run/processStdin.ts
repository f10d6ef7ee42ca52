// stdin-process: run the one packet on stdin.
//
// A regular file on stdin is handed to the receiver as it is, positioned at the payload. A
// pipe is not: we have read the header from it, and handing a pipe we have read from to a
// receiver is the state in which Linux bug 212295 can hang the writer. Its payload is copied
// through a pipe of our own instead.
import { FspoolError } from '../errors.js';
import { readHeaderFromFd } from '../queue/jobfile.js';
import { fdChunks, isRegularFile } from '../sys/fd.js';
import { Interrupts } from './interrupts.js';
import { type PayloadSource, type RunOptions, runJob } from './job.js';

export async function processStdin(opts: RunOptions): Promise<number> {
  const { header } = readHeaderFromFd(0);
  let payload: PayloadSource;
  if (isRegularFile(0)) {
    payload = { kind: 'fd', fd: 0 };
  } else {
    const src = fdChunks(0);
    payload = { kind: 'stream', chunks: src.chunks, verify: async () => {}, abort: src.stop };
  }
  const interrupts = new Interrupts().install();
  try {
    const outcome = await runJob({ header, payload }, opts, interrupts);
    if (outcome.ok) return 0;
    if (outcome.interrupted) return interrupts.exitCode;
    throw new FspoolError(`job ${header.seq}: ${outcome.reason}`);
  } finally {
    interrupts.uninstall();
  }
}
