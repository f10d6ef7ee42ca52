// queue-payload and stdin-payload: the payload alone, to stdout, in large unbuffered writes.
import { closeSync } from 'node:fs';
import { type DecodeContext, openForDelivery } from '../codec/decode.js';
import { describe, FspoolError } from '../errors.js';
import { type FileIdentity, openJobFile, sameFile } from '../queue/jobfile.js';
import { copyFd, writeAll } from '../sys/fd.js';
import { bytesLeft, Progress } from '../progress.js';
import { preparePayload } from './source.js';
import type { Owner } from '../queue/owner.js';

/**
 * Copy the payload of the packet at `fd` to `outFd`, undoing its encodings. With a required
 * signature nothing is written before it verified (decoded into `spoolDir` first).
 */
export async function writePayload(fd: number, outFd: number, ctx: DecodeContext, spoolDir: string, spoolOption?: string, spoolAs?: Owner): Promise<void> {
  const spoolAtLeast = bytesLeft(fd);
  const p = await preparePayload(await openForDelivery(fd, ctx), {
    mode: ctx.keys.requiresSignature ? 'verified' : 'stream',
    keys: ctx.keys,
    fd,
    spoolDir,
    spoolAs,
    spoolAtLeast,
    spoolOption,
  });
  if (!p.ok) throw new FspoolError(p.reason.replace('; the command was not started', ''));
  const progress = Progress.start(`payload of seq ${p.header.seq}`, p.payload.kind === 'fd' ? bytesLeft(p.payload.fd, p.payload.offset) : undefined);
  const where = outFd === 1 ? 'stdout' : `fd ${outFd}`;
  try {
    if (p.payload.kind === 'fd') {
      copyFd(p.payload.fd, outFd, progress);
      progress?.done();
      return;
    }
    const src = p.payload;
    try {
      if (src.via === 'worker') {
        // The decode worker writes to outFd itself.
        const d = await src.drain({ kind: 'fd', fd: outFd }, progress);
        if (d.outcome !== 'verified') throw typeof d.outcome === 'object' ? d.outcome.failure : new Error('decoding was stopped');
      } else {
        for await (const chunk of src.chunks) {
          writeAll(outFd, chunk);
          progress?.add(chunk.length);
        }
        await src.verify();
      }
      progress?.done();
    } catch (e) {
      src.abort();
      throw e;
    }
  } catch (e) {
    // What was written so far cannot be taken back: say so.
    const failed = (e as NodeJS.ErrnoException).syscall === 'write' ? `cannot write the payload to ${where}: ${describe(e)}` : describe(e);
    throw new FspoolError(`${failed}; the payload written is incomplete`);
  } finally {
    p.cleanup();
  }
}

export async function writeJobPayload(path: string, outFd: number, ctx: DecodeContext, spoolDir: string, spoolAs?: Owner, identity?: FileIdentity): Promise<void> {
  const { fd, stat } = openJobFile(path);
  try {
    // The file that was found, not one renamed over it since (or reached through a jobs/ made a
    // symlink since): its payload would be another packet's.
    if (identity && !sameFile(stat, identity)) throw new FspoolError(`${path} was replaced since it was found; nothing was written, run it again`);
    await writePayload(fd, outFd, ctx, spoolDir, undefined, spoolAs);
  } finally {
    closeSync(fd);
  }
}
