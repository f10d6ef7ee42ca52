// What a packet file starts with: a plain fspl packet, or a whole-packet encoding fspool can
// undo in-process (zstd, OpenPGP binary or armored), as written by fspool or by the zstd and
// gpg command-line tools.
import { MAGIC } from '../packet/codec.js';

export type Layer = 'fspl' | 'zstd' | 'openpgp' | 'unknown';

/** Enough bytes to recognise every layer (armor may follow some whitespace). */
export const SNIFF_BYTES = 64;

const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const ARMOR = Buffer.from('-----BEGIN PGP MESSAGE-----');
/** Packet tags a message can start with: PKESK, signature, SKESK, one-pass signature, compressed, SED, marker, literal, SEIPD, AEAD. */
const MESSAGE_TAGS = new Set([1, 2, 3, 4, 8, 9, 10, 11, 18, 20]);

/** The OpenPGP packet tag of a first byte, or undefined if it is not a packet header. */
export function openpgpTag(b: number): number | undefined {
  if ((b & 0x80) === 0) return undefined;
  return b & 0x40 ? b & 0x3f : (b & 0x3c) >> 2;
}

export function sniff(head: Buffer): Layer {
  if (head.length >= MAGIC.length && head.subarray(0, MAGIC.length).equals(MAGIC)) return 'fspl';
  if (head.length >= 4 && head.subarray(0, 4).equals(ZSTD_MAGIC)) return 'zstd';
  const text = head.toString('latin1').trimStart();
  if (text.startsWith(ARMOR.toString('latin1'))) return 'openpgp';
  const tag = head.length > 0 ? openpgpTag(head[0]!) : undefined;
  if (tag !== undefined && MESSAGE_TAGS.has(tag)) return 'openpgp';
  return 'unknown';
}

/** Compressions fspool does not undo itself, how each starts, and the decoder that does. */
const FOREIGN: Array<{ magic: RegExp; name: string; decoder: string }> = [
  { magic: /^\x1f\x8b/, name: 'gzip', decoder: 'gzip -dc' },
  // "BZh", the block size, then the first block's magic (the digits of pi): an empty stream holds no packet.
  { magic: /^BZh[1-9]\x31\x41\x59\x26\x53\x59/, name: 'bzip2', decoder: 'bzip2 -dc' },
  { magic: /^\xfd7zXZ\x00/, name: 'xz', decoder: 'xz -dc' },
  { magic: /^\x04\x22\x4d\x18/, name: 'lz4', decoder: 'lz4 -dc' },
];

/** The compression `head` starts with, among those a reader needs a decoder (-d) for. */
export function foreignCompression(head: Buffer): (typeof FOREIGN)[number] | undefined {
  const text = head.toString('latin1', 0, 10);
  return FOREIGN.find((f) => f.magic.test(text));
}

/**
 * Whether `head` starts the way fspool's own encodings, or gpg's encryption, start: a packet,
 * zstd, armor, or an OpenPGP message's first packet as encrypting or signing writes it (a
 * session key, a marker, a one-pass signature, compressed data). Stricter than sniff(), whose
 * test of a binary message's first byte takes about one byte in six.
 */
export function startsAsWritten(head: Buffer): boolean {
  const layer = sniff(head);
  if (layer !== 'openpgp') return layer !== 'unknown';
  if (head.toString('latin1').trimStart().startsWith(ARMOR.toString('latin1'))) return true;
  const tag = openpgpTag(head[0]!);
  return tag === 1 || tag === 3 || tag === 4 || tag === 8 || tag === 10;
}
