// stdin-process: run the one packet on stdin.
//
// A plain packet in a regular file on stdin is handed to the receiver as it is, positioned at
// the payload. Anything else (a pipe, an encoded packet) is streamed through a pipe of our
// own: handing on a pipe we have read the header from is the state in which Linux bug 212295
// can hang the writer.
import { type DecodeContext, openForDelivery } from '../codec/decode.js';
import { FspoolError } from '../errors.js';
import { bytesLeft } from '../progress.js';
import { runContext } from './context.js';
import { type RunOptions, runJob } from './job.js';
import { type DeliveryMode, preparePayload } from './source.js';
import { listenForSignals } from './stop.js';
import { os } from '../sys/lazy.js';

export async function processStdin(opts: RunOptions & { decode: DecodeContext; delivery: DeliveryMode; spoolDir?: string }): Promise<number> {
  // stdin cannot be read twice: a required signature is checked in verified mode, decoding
  // into --spool-dir (default $TMPDIR); a packet in a file needs at least its own size there.
  const spoolAtLeast = bytesLeft(0);
  const prepared = await preparePayload(await openForDelivery(0, opts.decode), {
    mode: opts.delivery,
    keys: opts.decode.keys,
    fd: 0,
    spoolDir: opts.spoolDir ?? os().tmpdir(),
    spoolAtLeast,
    spoolOption: '--spool-dir',
    timeoutSeconds: opts.timeoutSeconds,
  });
  if (!prepared.ok) throw new FspoolError(prepared.reason);
  // One job: any signal interrupts it at once.
  const ctx = runContext();
  const unlisten = listenForSignals((sig) => ctx.stop.receive(sig));
  try {
    const outcome = await runJob({ header: prepared.header, payload: prepared.payload }, opts, ctx);
    if (outcome.ok) return 0;
    if (outcome.interrupted) return ctx.stop.exitCode;
    throw new FspoolError(`job ${prepared.header.seq}: ${outcome.reason}`);
  } finally {
    unlisten();
    ctx.stop.dispose();
    prepared.cleanup();
  }
}
