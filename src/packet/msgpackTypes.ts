// What the readers of raw MessagePack bytes share: the shape walk (msgpackShape.ts), the
// rewrite before the library (libraryForm.ts), the one-pass reader (canonical.ts), and the
// writer (codec.ts). Sizes are the format's (github.com/msgpack/msgpack/blob/master/spec.md).
import { isAscii } from 'node:buffer';

/**
 * Bytes after the type byte of the fixed-size types: nil and booleans, integers and floats,
 * and fixext (its extension type byte, then its data). Fixints and fix containers are the type
 * byte alone and not here.
 */
export const FIXED: Readonly<Record<number, number>> = {
  0xc0: 0, 0xc2: 0, 0xc3: 0, 0xca: 4, 0xcb: 8, 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8,
  0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8, 0xd4: 2, 0xd5: 3, 0xd6: 5, 0xd7: 9, 0xd8: 17,
};

/** Whether `t` is fixext's (its type byte and data are FIXED's size). */
export const isFixext = (t: number) => t >= 0xd4 && t <= 0xd8;

/** Types whose data follows a length of 1, 2 or 4 bytes: [length bytes, whether an extension's type byte comes first]. */
export const SIZED: Readonly<Record<number, readonly [number, boolean]>> = {
  0xc4: [1, false], 0xc5: [2, false], 0xc6: [4, false], 0xd9: [1, false], 0xda: [2, false], 0xdb: [4, false],
  0xc7: [1, true], 0xc8: [2, true], 0xc9: [4, true],
};

/** Containers with a counted length: [length bytes, whether a map (two objects an entry)]. */
export const COUNTED: Readonly<Record<number, readonly [number, boolean]>> = { 0xdc: [2, false], 0xdd: [4, false], 0xde: [2, true], 0xdf: [4, true] };

/** The n bytes at `at` (all from there by default) as text of one character per byte: names as serde compares them, bytes as they are. */
export function latin1(b: Uint8Array, at = 0, n = b.byteLength - at): string {
  return Buffer.from(b.buffer, b.byteOffset + at, n).toString('latin1');
}

/** The unsigned big-endian integer of the n bytes at `at` (exact up to 6 bytes). */
export function readBE(b: Uint8Array, at: number, n: number): number {
  let v = 0;
  for (let i = 0; i < n; i++) v = v * 256 + b[at + i]!;
  return v;
}

/**
 * From this length on, a byte string (or a run of its elements) is first checked for bytes all
 * below 128: the check is one native call (~1 µs, whatever the length), and below it a loop over
 * the bytes is quicker.
 */
export const ASCII_RUN = 256;

/** Whether the n bytes at `at` are there, and are a run long enough to be checked at once (ASCII_RUN), all below 128. */
export function asciiRun(b: Uint8Array, at: number, n: number): boolean {
  return n >= ASCII_RUN && at + n <= b.length && isAscii(b.subarray(at, at + n));
}
