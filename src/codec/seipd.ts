// OpenPGP decryption of the common shape without openpgp.js's streams: session key packets
// (PKESK, SKESK), then one SEIPD v1 packet (AES, with MDC) — what fspool prepare, gpg 2.2 and
// openpgp.js write. openpgp.js still decrypts the session key; the bulk work is Node's AES-ECB,
// one pass of C for CFB's XOR (native/fspool_sys.c) and Node's SHA-1 for the MDC. openpgp.js's
// web streams cost ~3 s of CPU per GiB (bench enc-1g), most of it in stream plumbing.
//
// Anything else (SED, AEAD, SEIPD v2, a cipher that is not AES, a malformed start) goes to
// openpgp.js as before: openSeipd() hands the input back whole, the bytes it looked at put back.
//
// Inside, the plaintext is again an OpenPGP message. A literal data packet, alone or with
// one-pass signatures, is unwrapped here too (InnerMessage; openLiteral() does the same for a
// message that is not encrypted); anything else is handed back for openpgp.js.
//
// Safety is the EOF rule's, as with openpgp.js's streaming (src/codec/openpgp.ts): plaintext is
// handed on as it is decrypted, and the MDC is checked at the end; a mismatch, a truncation or
// trailing garbage makes the iteration throw there, so the receiver is killed before EOF.
import type { Cipher, Hash } from 'node:crypto';
import type { Key, SignaturePacket, Subkey } from 'openpgp';
import { createHash, crypto } from '../sys/lazy.js';
import { native } from '../sys/native.js';
import { isNoSessionKey, noSessionKey } from './decryptError.js';
import type { DecryptionMaterial } from './keys.js';
import { BodyFramer, type PacketHead, readPacketHead } from './pgpFraming.js';

type OpenPGP = typeof import('openpgp');

export type Unwrapped =
  /** Not the shape handled here: the input, whole again, for openpgp.js. */
  | { kind: 'other'; input: AsyncIterable<Buffer> }
  /**
   * Decrypting (or, from openLiteral, reading). `literal`: the plaintext is the literal data's content, and `signatures()` gives
   * (after the plaintext was read to its end) the verdict of each signature over it; else the
   * plaintext is an OpenPGP message (compressed, say) for openpgp.js to read. The iteration
   * throws, at the point it is found, if the packet is corrupt, truncated or tampered with.
   */
  | { kind: 'plaintext'; literal: boolean; plaintext: AsyncIterable<Buffer>; signatures(): Promise<Array<string | undefined>> };

const TAG = { PKESK: 1, SIGNATURE: 2, SKESK: 3, ONE_PASS: 4, LITERAL: 11, SEIPD: 18 } as const;
/**
 * Session key packets are small (an RSA-4096 PKESK is ~520 bytes): more than this is not our
 * shape. Small too because the start is joined anew with each chunk read (a pipe may give few
 * bytes at a time).
 */
const ESK_LIMIT = 16 * 1024;
/** openpgp.js's names of the AES ciphers, and Node's for them in ECB mode. */
export const AES_CIPHERS: Record<string, string> = { aes128: 'aes-128-ecb', aes192: 'aes-192-ecb', aes256: 'aes-256-ecb' };
export const BLOCK = 16;
/** The random prefix: a block, then its last two bytes again (RFC 4880 §5.13). */
const PREFIX = BLOCK + 2;
/** The MDC packet at the end of the plaintext: 0xD3 0x14, then SHA-1 of all that came before. */
const MDC = 22;
const EMPTY: Buffer = Buffer.alloc(0);

/** CFB decryption with a zero IV and no resync, as SEIPD v1 uses it. */
class CfbDecryptor {
  private readonly ecb: Cipher;
  /** E(previous ciphertext block); at the start E(IV). */
  private readonly reg: Buffer;
  /** Ciphertext of an incomplete block, waiting for the rest. */
  private rest = EMPTY;

  constructor(cipher: string, key: Uint8Array) {
    this.ecb = crypto().createCipheriv(cipher, key, null);
    this.ecb.setAutoPadding(false);
    this.reg = this.ecb.update(Buffer.alloc(BLOCK));
  }

  update(parts: Buffer[]): Buffer {
    const ct = this.rest.length === 0 && parts.length === 1 ? parts[0]! : Buffer.concat([this.rest].concat(parts));
    const whole = ct.length - (ct.length % BLOCK);
    this.rest = Buffer.from(ct.subarray(whole));
    if (whole === 0) return EMPTY;
    const ks = this.ecb.update(ct.subarray(0, whole));
    if (ks.length !== whole) throw new Error(`AES-ECB returned ${ks.length} bytes for ${whole}`);
    native().cfbXor(ks, ct, this.reg);
    return ks;
  }

  /** The plaintext of the last, incomplete block. */
  final(): Buffer {
    const p = Buffer.allocUnsafe(this.rest.length);
    for (let i = 0; i < p.length; i++) p[i] = this.reg[i]! ^ this.rest[i]!;
    return p;
  }
}

/** Does the key decrypt the prefix's check bytes? `c`: the first PREFIX bytes of ciphertext. */
function prefixChecks(cipher: string, key: Uint8Array, c: Buffer): boolean {
  const d = new CfbDecryptor(cipher, key);
  const p = Buffer.concat([d.update([c]), d.final()]);
  return p[BLOCK - 2] === p[BLOCK] && p[BLOCK - 1] === p[BLOCK + 1];
}

/** Strips the prefix and the MDC packet off the plaintext, hashing it; checks the MDC at the end. */
class MdcCheck {
  private readonly hash = createHash('sha1');
  private prefixLeft = PREFIX;
  /** The last MDC bytes seen: the MDC packet, once the input has ended. */
  private tail = EMPTY;

  push(p: Buffer): Buffer[] {
    if (this.prefixLeft > 0) {
      const n = Math.min(this.prefixLeft, p.length);
      this.hash.update(p.subarray(0, n));
      this.prefixLeft -= n;
      p = p.subarray(n);
    }
    if (p.length === 0) return [];
    let out: Buffer[];
    if (p.length >= MDC) {
      out = this.tail.length ? [this.tail, p.subarray(0, p.length - MDC)] : [p.subarray(0, p.length - MDC)];
      // A copy: a subarray would keep the whole chunk alive into the next one.
      this.tail = Buffer.from(p.subarray(p.length - MDC));
    } else {
      const joined = Buffer.concat([this.tail, p]);
      const cut = Math.max(0, joined.length - MDC);
      out = [joined.subarray(0, cut)];
      this.tail = joined.subarray(cut);
    }
    out = out.filter((b) => b.length > 0);
    for (const b of out) this.hash.update(b);
    return out;
  }

  end(): void {
    const t = this.tail;
    if (this.prefixLeft > 0 || t.length < MDC || t[0] !== 0xd3 || t[1] !== 0x14) throw new Error('the modification detection code (MDC) is missing');
    this.hash.update(t.subarray(0, 2));
    if (!this.hash.digest().equals(t.subarray(2))) throw new Error('modification detected: the MDC does not match');
  }
}

/** Node's names of the hash algorithms a signature may use (RFC 4880 §9.4 numbers). */
const HASHES: Record<number, string> = { 2: 'sha1', 8: 'sha256', 9: 'sha384', 10: 'sha512', 11: 'sha224', 12: 'sha3-256', 14: 'sha3-512' };
/** Signature packets after the literal data are small; more than this is not our shape. */
const SIGNATURES_LIMIT = 64 * 1024;
/**
 * One-pass packets before it: at most this many, in at most this many bytes, or it is not our
 * shape. The start is joined and re-read with each chunk until it is decided, so it stays small.
 */
const ONE_PASS_MAX = 16;
const PRELUDE_LIMIT = 4096;

/** A one-pass signature packet, version 3 (RFC 4880 §5.4): what the signature at the end will be. */
interface OnePass {
  signatureType: number;
  hashAlgorithm: number;
  publicKeyAlgorithm: number;
  keyID: Buffer;
}

/**
 * The plaintext message. Unwrapped here: one literal data packet, optionally signed the way
 * fspool, openpgp.js and gpg sign (one-pass signature packets before it, version 3, over binary
 * data; the signature packets after it). The literal packet's format, file name and date are
 * dropped, as openpgp.js's `format: 'binary'` does. Any other message is passed on whole, for
 * openpgp.js; that is decided before any plaintext is passed on.
 *
 * Signatures: the content is hashed as it streams (one hash per algorithm, only when there are
 * keys to verify with); at the end each signature is checked by openpgp.js against the digest,
 * with the same checks openpgp.js's own verify() makes (src/codec/openpgp.ts).
 */
class InnerMessage {
  kind: 'literal' | 'message' | undefined;
  private head = EMPTY;
  private readonly onePass: OnePass[] = [];
  private readonly hashes = new Map<number, Hash>();
  private body: BodyFramer | undefined;
  /** Literal body bytes seen; the first 6 + name length are the literal packet's own fields. */
  private pos = 0;
  private nameLength = -1;
  /** What follows the literal packet: the signature packets. */
  private tail: Buffer[] = [];
  private tailLength = 0;
  private signaturePackets: SignaturePacket[] = [];

  constructor(
    private readonly pgp: OpenPGP,
    private readonly verificationKeys: Key[],
  ) {}

  push(p: Buffer): Buffer[] {
    if (this.kind === 'message') return [p];
    if (this.kind === undefined) {
      this.head = this.head.length ? Buffer.concat([this.head, p]) : p;
      const literal = this.prelude();
      if (literal === undefined) return [];
      if (literal === 'message') {
        this.kind = 'message';
        const all = this.head;
        this.head = EMPTY;
        return [all];
      }
      this.kind = 'literal';
      this.body = new BodyFramer(literal.head.body);
      p = this.head.subarray(literal.at + literal.head.size);
      this.head = EMPTY;
      for (const o of this.onePass) {
        if (this.verificationKeys.length && !this.hashes.has(o.hashAlgorithm)) this.hashes.set(o.hashAlgorithm, createHash(HASHES[o.hashAlgorithm]!));
      }
    }
    const { body, after } = this.body!.push(p);
    if (after && after.length > 0) {
      this.tail.push(after);
      this.tailLength += after.length;
      if (this.tailLength > SIGNATURES_LIMIT) throw new Error('more data after the literal data packet than signatures take');
    }
    const out: Buffer[] = [];
    for (const b of body) {
      const start = this.pos;
      this.pos += b.length;
      if (this.nameLength < 0 && start <= 1 && this.pos > 1) this.nameLength = b[1 - start]!;
      const skip = this.nameLength < 0 ? Infinity : 6 + this.nameLength;
      if (this.pos <= skip) continue;
      const content = start >= skip ? b : b.subarray(skip - start);
      for (const h of this.hashes.values()) h.update(content);
      out.push(content);
    }
    return out;
  }

  /**
   * Read the one-pass signature packets at the start of `head`, up to the literal packet: where
   * it is, 'message' if the message is not our shape, undefined if more bytes are needed.
   */
  private prelude(): { at: number; head: PacketHead } | 'message' | undefined {
    let at = 0;
    this.onePass.length = 0;
    const more = () => (this.head.length > PRELUDE_LIMIT ? 'message' : undefined);
    for (;;) {
      let h: PacketHead | undefined;
      try {
        h = readPacketHead(this.head, at);
      } catch {
        return 'message';
      }
      if (!h) return more();
      if (h.tag === TAG.LITERAL) return { at, head: h };
      if (h.tag !== TAG.ONE_PASS || h.body.kind !== 'definite' || h.body.length !== 13) return 'message';
      if (this.head.length < at + h.size + 13) return more();
      const b = this.head.subarray(at + h.size, at + h.size + 13);
      // Version 3 goes with version 4 signatures; signatures over binary data only.
      if (b[0] !== 3 || b[1] !== 0 || HASHES[b[2]!] === undefined || this.onePass.length === ONE_PASS_MAX) return 'message';
      this.onePass.push({ signatureType: b[1]!, hashAlgorithm: b[2]!, publicKeyAlgorithm: b[3]!, keyID: Buffer.from(b.subarray(4, 12)) });
      at += h.size + 13;
    }
  }

  /** The bytes it was given while it could not yet tell the message's shape. */
  undecided(): Buffer {
    return this.head;
  }

  end(): void {
    if (this.kind === undefined) throw new Error(this.head.length ? 'the message is truncated' : 'the message is empty');
    if (this.kind === 'message') return;
    this.body!.end();
    if (this.nameLength < 0 || this.pos < 6 + this.nameLength) throw new Error('the literal data packet is truncated');
    // The signature packets, one for each one-pass signature packet.
    const tail = Buffer.concat(this.tail);
    for (let at = 0; at < tail.length; ) {
      const h = readPacketHead(tail, at);
      if (!h || h.tag !== TAG.SIGNATURE || h.body.kind !== 'definite' || at + h.size + h.body.length > tail.length) throw new Error('data after the literal data packet that is not a signature');
      const sig = new this.pgp.SignaturePacket();
      sig.read(tail.subarray(at + h.size, at + h.size + h.body.length));
      this.signaturePackets.push(sig);
      at += h.size + h.body.length;
    }
    if (this.signaturePackets.length !== this.onePass.length) throw new Error(`${this.onePass.length} one-pass signature packet(s) but ${this.signaturePackets.length} signature(s)`);
  }

  /** After end(): for each signature, undefined if it verified against one of the keys, else why not. */
  async signatures(): Promise<Array<string | undefined>> {
    return Promise.all(
      this.signaturePackets.map(async (sig) => {
        try {
          await this.verify(sig);
          return undefined;
        } catch (e) {
          return (e as Error).message;
        }
      }),
    );
  }

  private async verify(sig: SignaturePacket): Promise<void> {
    const keyID = sig.issuerKeyID.toHex();
    const onePass = this.onePass.find((o) => o.keyID.toString('hex') === keyID);
    if (
      !onePass ||
      sig.version !== 4 ||
      sig.signatureType !== onePass.signatureType ||
      sig.hashAlgorithm !== onePass.hashAlgorithm ||
      sig.publicKeyAlgorithm !== onePass.publicKeyAlgorithm
    ) {
      throw new Error('Corresponding signature packet does not match one-pass signature packet');
    }
    let primary: Key | undefined;
    let signing: Key | Subkey | undefined;
    for (const key of this.verificationKeys) {
      const found = key.getKeys(sig.issuerKeyID);
      if (found.length > 0) {
        primary = key;
        signing = found[0];
        break;
      }
    }
    if (!primary || !signing) throw new Error(`Could not find signing key with key ID ${sig.issuerKeyID.toHex()}`);
    // The digest (RFC 4880 §5.2.4): the data, the signature's hashed part, then its v4 trailer.
    const h = this.hashes.get(sig.hashAlgorithm!)!.copy();
    const data = sig.signatureData!;
    h.update(data);
    const trailer = Buffer.from([4, 0xff, 0, 0, 0, 0]);
    trailer.writeUInt32BE(data.length, 2);
    h.update(trailer);
    // openpgp.js's own one-pass verification hands the signature its digest the same way
    // (OnePassSignaturePacket.verify sets `hashed`); the rest is what its verify() checks:
    // the signature (and its hash algorithm, expiry, critical subpackets), then the key.
    (sig as SignaturePacket & { hashed?: Uint8Array }).hashed = h.digest();
    await sig.verify(signing.keyPacket, sig.signatureType!, {});
    if (signing.getCreationTime() > sig.created!) throw new Error('Key is newer than the signature');
    await primary.getSigningKey(signing.getKeyID(), sig.created);
  }
}

async function* replay(seen: Buffer[], it: AsyncIterator<Buffer>, ended: boolean): AsyncGenerator<Buffer> {
  yield* seen;
  if (ended) return;
  for (;;) {
    const r = await it.next();
    if (r.done) return;
    yield r.value;
  }
}

/** Open an encrypted OpenPGP message (binary, starting with a session key packet). */
export async function openSeipd(src: AsyncIterable<Buffer>, pgp: OpenPGP, material: DecryptionMaterial): Promise<Unwrapped> {
  const it = src[Symbol.asyncIterator]();
  /** What was read before deciding this is our shape, to be handed back if it is not. */
  let seen: Buffer[] | undefined = [];
  let ended = false;
  let buf = EMPTY;
  const read = async (): Promise<Buffer | undefined> => {
    if (ended) return undefined;
    const r = await it.next();
    if (r.done) {
      ended = true;
      return undefined;
    }
    seen?.push(r.value);
    return r.value;
  };
  const other = (): Unwrapped => ({ kind: 'other', input: replay(seen!, it, ended) });

  // Session key packets, up to the SEIPD packet's header.
  let at = 0;
  let seipd: PacketHead;
  for (;;) {
    let h: PacketHead | undefined;
    try {
      h = readPacketHead(buf, at);
    } catch {
      return other();
    }
    const esk = h !== undefined && (h.tag === TAG.PKESK || h.tag === TAG.SKESK);
    // A session key packet is read whole; of the SEIPD packet, only its header.
    const end = h && esk && h.body.kind === 'definite' ? at + h.size + h.body.length : h ? at + h.size : at;
    if (!h || buf.length < end) {
      const chunk = buf.length <= ESK_LIMIT ? await read() : undefined;
      if (!chunk) return other();
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      continue;
    }
    if (esk && h.body.kind === 'definite' && end <= ESK_LIMIT) {
      at = end;
      continue;
    }
    if (h.tag !== TAG.SEIPD || at === 0 || h.body.kind === 'indeterminate') return other();
    seipd = h;
    break;
  }
  const sessionKeyPackets = buf.subarray(0, at);

  // The SEIPD body's start: its version, and the prefix for checking the session key.
  const framer = new BodyFramer(seipd.body);
  const start: Buffer[] = [];
  let have = 0;
  let trailing = false;
  const take = (chunk: Buffer) => {
    const { body, after } = framer.push(chunk);
    for (const b of body) start.push(b);
    have += body.reduce((n, b) => n + b.length, 0);
    if (after && after.length > 0) trailing = true;
  };
  take(buf.subarray(at + seipd.size));
  while (have < 1 + PREFIX && !framer.done) {
    const chunk = await read();
    if (!chunk) break;
    take(chunk);
  }
  const body = Buffer.concat(start.splice(0));
  if (body.length < 1 || body[0] !== 1) return other();
  if (body.length < 1 + PREFIX) throw new Error('the encrypted packet is truncated');

  const message = await pgp.readMessage({ binaryMessage: sessionKeyPackets });
  const toKeys = message.getEncryptionKeyIDs().length > 0 && material.decryptionKeys.length > 0;
  let candidates;
  try {
    candidates = await pgp.decryptSessionKeys({
      message,
      ...(toKeys ? { decryptionKeys: material.decryptionKeys } : { passwords: material.passwords }),
    });
  } catch (e) {
    throw isNoSessionKey(e) ? new Error(noSessionKey(message, material)) : e;
  }
  const usable = candidates.filter((k) => k.algorithm && AES_CIPHERS[k.algorithm]);
  if (usable.length === 0) return other();
  // The prefix's check bytes only choose among several candidate keys. They never fail the
  // packet on their own: an early, distinct error for them is the oracle of Mister and
  // Zuccherato (RFC 4880 §14); a wrong key shows at the header, and at the latest at the MDC.
  const prefix = body.subarray(1, 1 + PREFIX);
  const key = (usable.length > 1 && usable.find((k) => prefixChecks(AES_CIPHERS[k.algorithm!]!, k.data, prefix))) || usable[0]!;

  // Committed: from here on, this is the decryption.
  seen = undefined;
  const dec = new CfbDecryptor(AES_CIPHERS[key.algorithm!]!, key.data);
  const mdc = new MdcCheck();
  const inner = new InnerMessage(pgp, material.verificationKeys);
  const out: Buffer[] = [];
  const feed = (pt: Buffer) => {
    for (const p of mdc.push(pt)) for (const b of inner.push(p)) out.push(b);
  };
  let finished = false;
  /** Decrypt the next chunk of input into `out`; false once the input has ended and all checked out. */
  const step = async (): Promise<boolean> => {
    if (finished) return false;
    if (trailing) throw new Error('data after the encrypted packet');
    const chunk = await read();
    if (!chunk) {
      finished = true;
      framer.end();
      feed(dec.final());
      mdc.end();
      inner.end();
      return false;
    }
    take(chunk);
    if (trailing) throw new Error('data after the encrypted packet');
    feed(dec.update(start.splice(0)));
    return true;
  };
  let failure: unknown;
  try {
    feed(dec.update([body.subarray(1)]));
    while (inner.kind === undefined && (await step()));
  } catch (e) {
    failure = e;
  }
  return { kind: 'plaintext', literal: inner.kind !== 'message', plaintext: drain(out, step, failure, it), signatures: () => inner.signatures() };
}

/**
 * The plaintext: what is already in `out`, then what each further `step` puts there; or, if
 * getting this far failed (`failure`), that error on the first read.
 */
async function* drain(out: Buffer[], step: () => Promise<boolean>, failure: unknown, it: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  try {
    if (failure !== undefined) throw failure;
    for (;;) {
      yield* out.splice(0);
      if (!(await step())) break;
    }
    yield* out.splice(0);
  } finally {
    await it.return?.();
  }
}

/**
 * Open an OpenPGP message that is not encrypted (binary, starting with a one-pass signature or
 * literal data packet): unwrapped here if it has the shape InnerMessage reads, else handed back
 * whole for openpgp.js.
 */
export async function openLiteral(src: AsyncIterable<Buffer>, pgp: OpenPGP, material: DecryptionMaterial): Promise<Unwrapped> {
  const it = src[Symbol.asyncIterator]();
  const inner = new InnerMessage(pgp, material.verificationKeys);
  const out: Buffer[] = [];
  let finished = false;
  const step = async (): Promise<boolean> => {
    if (finished) return false;
    const r = await it.next();
    if (r.done) {
      finished = true;
      inner.end();
      return false;
    }
    for (const b of inner.push(r.value)) out.push(b);
    return true;
  };
  while (inner.kind === undefined) {
    const r = await it.next();
    // Ended before it could tell: openpgp.js gives its reason.
    if (r.done) return { kind: 'other', input: replay([inner.undecided()], it, true) };
    for (const b of inner.push(r.value)) out.push(b);
  }
  // 'message': InnerMessage handed back all it was given, unchanged.
  if (inner.kind === 'message') return { kind: 'other', input: replay(out, it, false) };
  return { kind: 'plaintext', literal: true, plaintext: drain(out, step, undefined, it), signatures: () => inner.signatures() };
}
