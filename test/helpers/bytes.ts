// Deterministic test bytes and numbers: the same for the same seed, so a failure can be replayed.
// @ts-expect-error: a plain .mjs module shared with the benchmarks
import { prng as benchPrng } from '../../bench/lib/harness.mjs';
import { crc32 } from 'node:zlib';
import { MAGIC, PREFIX_LEN } from '../../src/packet/codec.js';

/**
 * A packet header around raw metadata bytes, with L and both CRCs right (`claimed`: the L to
 * write instead), then `rest`: for metadata no encoder would write.
 */
export function aroundMetadata(meta: Uint8Array, rest: Uint8Array = Buffer.alloc(0), claimed = BigInt(meta.length)): Buffer {
  const p = Buffer.alloc(PREFIX_LEN);
  MAGIC.copy(p, 0);
  p.writeUInt16BE(1, 12);
  p.writeBigUInt64BE(claimed, 14);
  p.writeUInt32BE(crc32(meta), 22);
  p.writeUInt32BE(crc32(p.subarray(0, 26)), 26);
  return Buffer.concat([p, meta, rest]);
}

/** mulberry32 (bench/lib/harness.mjs): floats in [0, 1) from a seed. */
export const prng: (seed: number) => () => number = benchPrng;

/** `len` bytes of an xorshift stream seeded with `s`: the same for the same seed, cheap to make. */
export function filler(len: number, s: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  let x = s >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
