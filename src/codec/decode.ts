// From the bytes of a job file (or stdin) to a packet header and its payload, undoing
// whole-packet encodings layer by layer: an external decoder (-d), then zstd and OpenPGP in
// any order, recognised by their leading bytes (spec/encoding.md).
import { fstatSync, readSync } from 'node:fs';
import { readHeaderFromFd } from './plainHeader.js';
import { fdChunks, fdOffset } from '../sys/fd.js';
import { after, type Timer } from '../sys/timer.js';
import { DecoderError, type Guard, runDecoder } from './external.js';
import type { Keyring } from './keys.js';
import { builtInLate, type DecodeWorkers } from './decodeThread.js';
import { decodeChunks, type OpenedPacket } from './layers.js';
import { SNIFF_BYTES, sniff } from './sniff.js';

export { decodeChunks, type Drained, type InlinePacket, type OpenedPacket, type RawPacket, type Sink, type StreamPacket, type WorkerPacket } from './layers.js';

export interface DecodeContext {
  /** External decoder command (`-d`), run before any built-in layer. */
  decoder?: string;
  /**
   * How long the decoder may take to produce the packet header (seconds; 0 or absent: no
   * limit). A decoder that hangs there would otherwise hang the processor, lock held.
   */
  decoderTimeoutSeconds?: number;
  keys: Keyring;
  /** Kills external decoders (and stops built-in decoding) when the run they work for is interrupted. */
  guard?: Guard;
  /**
   * Where packets are decoded for delivery (openForDelivery): off the main thread. Without it,
   * in this thread.
   */
  workers?: DecodeWorkers;
}

/**
 * Reads of an encoded file: 256 KiB keeps openpgp.js and zstd busy, and (measured, bench/) the
 * garbage of larger reads is what drives peak RSS; memory stays bounded for any payload size.
 */
const DECODE_CHUNK = 256 * 1024;

/**
 * Open the packet at `fd`'s current offset. A plain fspl packet in a regular file comes back
 * raw, with the fd at the payload; anything else (an encoding, a decoder, a pipe) as a stream.
 * `at`: that offset, when the caller knows it (a file it has just opened: 0), which spares
 * reading it from /proc.
 */
export async function openPacket(fd: number, ctx: DecodeContext, at?: number): Promise<OpenedPacket> {
  if (ctx.decoder) {
    const d = runDecoder(ctx.decoder, fd, ctx.guard);
    const opened = decodeChunks(d.chunks, ctx, { verify: d.verify, abort: d.abort, layers: ['decoder'] });
    return headerWithin(opened, ctx.decoderTimeoutSeconds, () => {
      d.abort();
      return new DecoderError(`decoder "${ctx.decoder}" gave no packet header within ${ctx.decoderTimeoutSeconds}s (--decoder-timeout); it was killed`);
    });
  }
  const st = fstatSync(fd);
  if (st.isFile()) {
    const pos = at ?? fdOffset(fd);
    const head = Buffer.alloc(SNIFF_BYTES);
    const n = readSync(fd, head, 0, SNIFF_BYTES, pos);
    const kind = sniff(head.subarray(0, n));
    if (kind === 'fspl') return { kind: 'raw', ...readHeaderFromFd(fd, st.size) };
    // openpgp.js and the keys are loaded in the decode worker only (~20 MB that this thread
    // then never holds); zstd is undone here, where a scan of many small packets is quicker.
    if (kind === 'openpgp' && ctx.workers) return ctx.workers.open(fd, pos, ctx.keys.opts, ctx.guard, ctx.decoderTimeoutSeconds);
  }
  const input = fdChunks(fd, DECODE_CHUNK);
  const opened = decodeChunks(input.chunks, ctx, { verify: async () => {}, abort: input.stop, layers: [] });
  return headerWithin(opened, ctx.decoderTimeoutSeconds, () => {
    input.stop();
    return new DecoderError(builtInLate(ctx.decoderTimeoutSeconds!));
  });
}

/**
 * `opened`, or the error `late()` makes (after stopping the decoding) if it has no header
 * within `seconds` (0 or absent: no limit). Built-in decoding is bounded as an external
 * decoder is: a packet of a few KiB can hold work for hours (spec/encoding.md).
 */
async function headerWithin(opened: Promise<OpenedPacket>, seconds: number | undefined, late: () => Error): Promise<OpenedPacket> {
  if (!seconds) return opened;
  let timer: Timer | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = after(seconds, () => reject(late()));
  });
  try {
    return await Promise.race([opened, expired]);
  } finally {
    timer?.clear();
  }
}


/**
 * Open the packet at `fd` to deliver its payload (to a receiver, a temp file, stdout): as
 * openPacket, but a packet fspool decodes itself is decoded by the context's decode worker,
 * whose bytes never pass through this thread. Only the header is read when this resolves.
 * External decoders (`-d`) run from this thread as for openPacket.
 */
export async function openForDelivery(fd: number, ctx: DecodeContext, at?: number): Promise<OpenedPacket> {
  if (ctx.decoder || !ctx.workers) return openPacket(fd, ctx, at);
  const st = fstatSync(fd);
  // The worker reads a file, a pipe or a socket (stdin from a Node parent is one); a terminal
  // is read here.
  if (!st.isFile() && !st.isFIFO() && !st.isSocket()) return openPacket(fd, ctx, at);
  let pos = 0;
  if (st.isFile()) {
    pos = at ?? fdOffset(fd);
    const head = Buffer.alloc(SNIFF_BYTES);
    const n = readSync(fd, head, 0, SNIFF_BYTES, pos);
    if (sniff(head.subarray(0, n)) === 'fspl') return { kind: 'raw', ...readHeaderFromFd(fd, st.size) };
  }
  return ctx.workers.open(fd, pos, ctx.keys.opts, ctx.guard, ctx.decoderTimeoutSeconds);
}
