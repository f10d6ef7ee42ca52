// OpenPGP encryption of the sender's packets without openpgp.js's streams: the inverse of
// src/codec/seipd.ts, for the shape it reads. openpgp.js picks the cipher (from the recipients'
// preferences, as it would for its own encryption) and writes the session key packets; fspool
// writes one SEIPD v1 packet (AES-CFB, MDC) holding one binary literal data packet, both in
// partial-length parts, with Node's AES-CFB and SHA-1. GnuPG 2.2 and fspool's reader take it as
// they take openpgp.js's (test/encoding.test.ts). Signing still goes through openpgp.js.
import type { Key } from 'openpgp';
import { createHash, crypto } from '../sys/lazy.js';
import { definiteLength } from './pgpFraming.js';
import { AES_CIPHERS, BLOCK } from './seipd.js';

type OpenPGP = typeof import('openpgp');

/** Each partial-length part: 2^18 bytes (a power of two, ≥ 512, as RFC 4880 §4.2.2.4 asks). */
const PART_POWER = 18;
const PART = 1 << PART_POWER;

/**
 * A packet body cut into partial-length parts as it is written: push() hands out whole parts
 * (a length byte, then the bytes, as subarrays of the input); end() the last part with a
 * definite length.
 */
class PartWriter {
  private pending: Buffer[] = [];
  private pendingLength = 0;

  constructor(private readonly tag: number) {}

  /** The packet's first byte: a new-format header of this tag. */
  head(): Buffer {
    return Buffer.from([0xc0 | this.tag]);
  }

  push(b: Buffer): Buffer[] {
    if (b.length === 0) return [];
    this.pending.push(b);
    this.pendingLength += b.length;
    const out: Buffer[] = [];
    while (this.pendingLength >= PART) {
      out.push(Buffer.from([0xe0 | PART_POWER]));
      let need = PART;
      while (need > 0) {
        const first = this.pending[0]!;
        if (first.length <= need) {
          out.push(first);
          need -= first.length;
          this.pending.shift();
        } else {
          out.push(first.subarray(0, need));
          this.pending[0] = first.subarray(need);
          need = 0;
        }
      }
      this.pendingLength -= PART;
    }
    return out;
  }

  end(): Buffer[] {
    const out = [definiteLength(this.pendingLength), ...this.pending];
    this.pending = [];
    this.pendingLength = 0;
    return out;
  }
}

export interface EncryptTo {
  encryptionKeys?: Key[];
  passwords?: string[];
}

/**
 * Encrypt `src` as an OpenPGP message, or undefined if openpgp.js would choose a cipher that
 * is not AES (then the caller uses openpgp.js).
 */
export async function encryptSeipd(src: AsyncIterable<Buffer>, pgp: OpenPGP, to: EncryptTo): Promise<AsyncIterable<Buffer> | undefined> {
  const config = { aeadProtect: false };
  const sessionKey = await pgp.generateSessionKey({ encryptionKeys: to.encryptionKeys ?? [], config });
  const cipher = sessionKey.algorithm && AES_CIPHERS[sessionKey.algorithm]?.replace('-ecb', '-cfb');
  if (!cipher || sessionKey.aeadAlgorithm) return undefined;
  const sessionKeyPackets = await pgp.encryptSessionKey({ ...sessionKey, ...to, format: 'binary', config });
  return (async function* () {
    const { randomBytes, createCipheriv } = crypto();
    const cfb = createCipheriv(cipher, sessionKey.data, Buffer.alloc(BLOCK));
    const mdc = createHash('sha1');
    const seipd = new PartWriter(18);
    const literal = new PartWriter(11);
    /** Plaintext into the SEIPD packet: hashed for the MDC, encrypted, cut into parts. */
    const seal = (pieces: Buffer[]): Buffer[] => {
      const plain = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
      mdc.update(plain);
      return seipd.push(cfb.update(plain));
    };
    const prefix = randomBytes(BLOCK);
    const date = Buffer.alloc(4);
    date.writeUInt32BE(Math.floor(Date.now() / 1000));
    yield Buffer.from(sessionKeyPackets as Uint8Array);
    yield seipd.head();
    // SEIPD v1: version 1, then (encrypted) the random prefix with its last two bytes repeated.
    yield* seipd.push(Buffer.from([1]));
    // The literal data packet: binary ('b'), no file name, the date; then the data.
    yield* seal([prefix, prefix.subarray(BLOCK - 2), literal.head()].concat(literal.push(Buffer.from([0x62, 0])), literal.push(date)));
    for await (const chunk of src) yield* seal(literal.push(chunk));
    const last = literal.end().concat(Buffer.from([0xd3, 0x14]));
    yield* seal(last);
    yield* seipd.push(Buffer.concat([cfb.update(mdc.digest()), cfb.final()]));
    yield* seipd.end();
  })();
}
