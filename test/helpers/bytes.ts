// Deterministic test bytes and numbers: the same for the same seed, so a failure can be replayed.
// @ts-expect-error: a plain .mjs module shared with the benchmarks
import { prng as benchPrng } from '../../bench/lib/harness.mjs';

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
