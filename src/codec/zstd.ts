// zstd in-process (zstd-napi), loaded only when a packet needs it.
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import type { Transform } from 'node:stream';
import { FspoolError } from '../errors.js';
import { stream } from '../sys/lazy.js';

// require, not import(): see openpgp() in keys.ts.
const zstd = () => createRequire(import.meta.url)('zstd-napi') as typeof import('zstd-napi');

async function through(src: AsyncIterable<Buffer>, t: Transform): Promise<AsyncIterable<Buffer>> {
  // pipeline carries an error of the source into the transform, and tears both down if the
  // consumer stops early.
  const { pipeline, Readable } = stream();
  // Readable.from buffers 16 chunks by default (16 MiB of 1 MiB reads): one is enough to keep
  // zstd busy, and memory stays bounded whatever the payload size.
  pipeline(Readable.from(src, { highWaterMark: 1 }), t, () => {});
  return t as AsyncIterable<Buffer>;
}

/**
 * Decompress one or more zstd frames. A truncated frame or a wrong content checksum makes
 * the iteration throw at the point it is found, which is after earlier output was passed on:
 * the consumer must hold back EOF until the iteration has ended cleanly.
 */
export async function zstdDecompress(src: AsyncIterable<Buffer>): Promise<AsyncIterable<Buffer>> {
  const { DecompressStream } = zstd();
  const out = await through(src, new DecompressStream());
  return (async function* () {
    try {
      yield* out;
    } catch (e) {
      // zstd-napi's messages ("Restored data doesn't match checksum") do not say whose they are.
      if (e instanceof FspoolError) throw e;
      throw new FspoolError(`zstd data is corrupt or truncated: ${(e as Error).message}`);
    }
  })();
}

/** Compress with the content checksum on (zstd-napi's default is off) and zstd's own worker threads. */
export async function zstdCompress(src: AsyncIterable<Buffer>, level: number): Promise<AsyncIterable<Buffer>> {
  const { CompressStream } = zstd();
  return through(src, new CompressStream({ compressionLevel: level, checksumFlag: true, nbWorkers: availableParallelism() }));
}
