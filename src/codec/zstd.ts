// zstd in-process, through zstd-napi's low-level binding (ZSTD_compressStream2 and
// ZSTD_decompressStream) rather than its Transform streams: no stream machinery between the
// layers. Loaded only when a packet needs it.
import { FspoolError } from '../errors.js';
import { zstdBinding } from '../sys/native.js';
import { allocated } from '../sys/youngGc.js';
import { os } from '../sys/lazy.js';

/**
 * The largest window a frame may ask the decoder for: 8 MiB, what levels 1-19 use at most.
 * zstd's own default (128 MiB) would let one hostile frame take the processor far past its
 * 100 MB; frames made with --long or --ultra -20..22 are refused, with a way around it.
 */
const WINDOW_LOG_MAX = 23;

/** Output buffers: zstd's block size twice over, fewer writes. */
const OUT_CHUNK = 256 * 1024;
/**
 * Input is fed to zstd through a buffer of this size, reused (zstd keeps no pointer into its
 * input between calls). So an input chunk dies as soon as it is copied, and not after all the
 * output made from it (15 times as much for text): a chunk that outlives two young-generation
 * collections waits for a full one (src/sys/youngGc.ts). Costs one copy of the compressed data.
 */
const IN_CHUNK = 64 * 1024;

/**
 * Decompress one or more zstd frames (a 1 GiB zstd-only packet into `cat`: 0.92 s → 0.59 s,
 * 1.04 → 0.68 s of CPU, against the Transform stream). A truncated frame or a wrong content
 * checksum makes the iteration throw at the point it is found, which is after earlier output
 * was passed on: the consumer must hold back EOF until the iteration has ended cleanly.
 */
export async function zstdDecompress(src: AsyncIterable<Buffer>, reuse?: () => boolean): Promise<AsyncIterable<Buffer>> {
  const b = zstdBinding();
  const dctx = new b.DCtx();
  dctx.setParameter(b.DParameter.windowLogMax, WINDOW_LOG_MAX);
  return (async function* () {
    // Inside a frame: its end has not been seen yet (ZSTD_decompressStream returns 0 at a frame's end).
    let inFrame = false;
    const feed = Buffer.allocUnsafeSlow(IN_CHUNK);
    /** The output buffer, while the consumer says it may be reused (see `reuse`). */
    let kept: Buffer | undefined;
    try {
      for await (const chunk of src) {
        // A reader that reuses its output buffers is done with each before asking for the next
        // one: its chunk is fed as it is, not copied.
        const direct = reuse?.() === true;
        for (let at = 0; at < chunk.length; ) {
          const n = direct ? chunk.length : chunk.copy(feed, 0, at, at + IN_CHUNK);
          let input = direct ? chunk : feed.subarray(0, n);
          at += n;
          for (;;) {
            let out = reuse?.() ? (kept ??= Buffer.allocUnsafeSlow(OUT_CHUNK)) : undefined;
            if (!out) {
              out = Buffer.allocUnsafe(OUT_CHUNK);
              allocated(OUT_CHUNK);
            }
            const [hint, produced, consumed] = dctx.decompressStream(out, input);
            input = input.subarray(consumed);
            inFrame = hint !== 0;
            if (produced > 0) yield out.subarray(0, produced);
            // Done with this input once it is all consumed and zstd has nothing more to flush.
            if (input.length === 0 && (produced < out.length || hint === 0)) break;
          }
        }
      }
    } catch (e) {
      // zstd's messages ("Restored data doesn't match checksum") do not say whose they are.
      if (e instanceof FspoolError) throw e;
      if (/too much memory/i.test((e as Error).message)) {
        throw new FspoolError(`zstd frame needs a window over ${1 << (WINDOW_LOG_MAX - 20)} MiB (zstd --long or --ultra?), refused to keep memory bounded; decode it with zstd -dc --long=31 (as -d for queue commands)`);
      }
      throw new FspoolError(`zstd data is corrupt or truncated: ${(e as Error).message}`);
    }
    if (inFrame) throw new FspoolError('zstd data is corrupt or truncated: the input ended inside a frame');
  })();
}

/**
 * zstd's job size for its worker threads. Its default (4 windows: 8 MiB at level 3) made a
 * 1 GiB prepare peak at 180 MB with two workers; 2 MiB jobs peak at ~105 MB, ran faster here,
 * and cost 0.4% in size (bench payload).
 */
const JOB_SIZE = 2 << 20;

/**
 * Compress into one frame with the content checksum on (zstd-napi's default is off) and zstd's
 * own worker threads, through the binding's ZSTD_compressStream2 as for decompression.
 */
export async function zstdCompress(src: AsyncIterable<Buffer>, level: number): Promise<AsyncIterable<Buffer>> {
  const b = zstdBinding();
  const cctx = new b.CCtx();
  cctx.setParameter(b.CParameter.compressionLevel, level);
  cctx.setParameter(b.CParameter.checksumFlag, 1);
  cctx.setParameter(b.CParameter.nbWorkers, os().availableParallelism());
  cctx.setParameter(b.CParameter.jobSize, JOB_SIZE);
  /** Feed `input` (all of it; with `end`, also flush the frame's end), handing out the output. */
  function* compress(input: Buffer, end: boolean): Generator<Buffer> {
    const op = end ? b.EndDirective.end : b.EndDirective.continue;
    for (;;) {
      const out = Buffer.allocUnsafe(OUT_CHUNK);
      const [left, produced, consumed] = cctx.compressStream2(out, input, op);
      input = input.subarray(consumed);
      if (produced > 0) yield out.subarray(0, produced);
      if (input.length === 0 && (!end || left === 0)) return;
    }
  }
  return (async function* () {
    for await (const chunk of src) yield* compress(chunk, false);
    yield* compress(Buffer.alloc(0), true);
  })();
}
