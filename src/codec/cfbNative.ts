// Loads native/fspool_cfb.c (built by node-gyp at install): SEIPD v1's AES-CFB decryption and
// MDC hashing on libuv's thread pool (src/codec/seipd.ts).
import { createRequire } from 'node:module';
import { packageFile } from '../sys/native.js';

interface Cfb {
  /** A context for AES-`bits` (128, 192, 256) in CFB mode with a zero IV, and SHA-1. */
  cfbNew(bits: number, key: Buffer): object;
  /**
   * Decrypt `cts` (the ciphertext in order, in pieces of whole blocks) into `pt` (as long as all
   * of them), after the ciphertext block `prev`; hashes as it goes. The array is not to change
   * until the promise settles.
   */
  cfbDecrypt(ctx: object, cts: Buffer[], prev: Buffer, pt: Buffer): Promise<void>;
  /** The plaintext of a last, incomplete block `rest` after `prev`. */
  cfbFinal(ctx: object, rest: Buffer, prev: Buffer): Buffer;
  /** SHA-1 of all plaintext but its last 20 bytes. */
  cfbDigest(ctx: object): Buffer;
}

let lib: Cfb | undefined;
export function cfbNative(): Cfb {
  lib ??= createRequire(import.meta.url)(packageFile('build/Release/fspool_cfb.node')) as Cfb;
  return lib;
}
