// A young-generation GC every few MiB of payload, for the decoding pipelines (and prepare's
// encoding one, which has the same problem).
//
// Decoding makes ~2.7 bytes of short-lived Buffers per payload byte (a read, the ciphertext
// joined across packet parts, AES's output, zstd's output). V8 frees young ArrayBuffers only in
// a scavenge, and starts one for their sake only once 32 MB of them have piled up (twice its
// default semi-space, whatever --max-semi-space-size says); the JS heap itself barely grows, so
// nothing else starts one. That pile was a third of the processor's peak RSS (bench enc-1g).
// A scavenge of a near-empty young generation takes ~0.03 ms here, so one every 4 MiB costs
// ~10 ms per GiB and keeps the pile near 11 MB.
//
// V8 offers the call only behind --expose-gc; setting the flag at run time, fetching `gc` from
// a new context and unsetting the flag is the way Jest does it. Should that ever stop working,
// this does nothing. The flag must not stay set: V8 checks a code cache against a hash of its
// flags, --expose-gc is in that hash, and with it set every cache is rejected, Node's own
// included: a worker started then compiled Node's internal modules from source (~40 ms more CPU
// at each decode worker's start). Concurrent ArrayBuffer sweeping, not in the hash, is turned
// off for good, so that a scavenge frees the buffers itself instead of leaving that to a
// background thread, which lags when the CPUs are busy (verified mode peaked at 88-93 MB with
// two CPU hogs running, 86-87 MB without that sweeping).
const EVERY = 4 << 20;

let gc: ((options: { type: 'minor' }) => void) | null | undefined;
let since = 0;

/** Count `bytes` of Buffers made by a decoding pipeline (its input and its output). */
export function allocated(bytes: number): void {
  since += bytes;
}

/**
 * Collect the young generation if enough was allocated since the last time: called after each
 * chunk of input or output has been passed on. Not more often: what is alive at a scavenge and
 * survives two is promoted to the old generation, where only a full GC frees it; at 1 MiB that
 * happened to the buffers in flight, and peak RSS went up, not down (bench enc-1g: 141 MB, against
 * 86 MB at 4 MiB and 98 MB at 8 MiB).
 */
export function collectIfDue(): void {
  if (since < EVERY) return;
  since = 0;
  if (gc === undefined) {
    try {
      setGcFlags();
      const v8 = process.getBuiltinModule('node:v8') as typeof import('node:v8');
      v8.setFlagsFromString('--expose-gc');
      try {
        gc = (process.getBuiltinModule('node:vm') as typeof import('node:vm')).runInNewContext('gc') as typeof gc;
      } finally {
        v8.setFlagsFromString('--no-expose-gc');
      }
    } catch {
      gc = null;
    }
  }
  gc?.({ type: 'minor' });
}

/**
 * The V8 flag collectIfDue's scavenges need to free the buffers themselves. A worker thread's
 * heap takes it as it is when the worker starts (set later, the ArrayBuffers of a decode worker
 * were swept on a background thread after all, and held ~20 MB more): call this before
 * starting one.
 */
export function setGcFlags(): void {
  (process.getBuiltinModule('node:v8') as typeof import('node:v8')).setFlagsFromString('--no-concurrent-array-buffer-sweeping');
}
