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
import type { AnyPacket, Key, Message, PacketList, SignaturePacket } from 'openpgp';
import { createHash, crypto } from '../sys/lazy.js';
import { native } from '../sys/native.js';
import { cfbNative } from './cfbNative.js';
import { isNoSessionKey, noSessionKey, tooManySessionKeys } from './decryptError.js';
import { fastS2K, HASH_NAMES } from './s2k.js';
import type { DecryptionMaterial } from './keys.js';
import { BodyFramer, definiteLength, type PacketHead, readPacketHead } from './pgpFraming.js';

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

  /**
   * The plaintext of `parts` (pieces of ciphertext, in order), as far as whole blocks go. Each
   * part is decrypted where it lies (a read spans two SEIPD parts as a rule: no joining copy);
   * only a block split between parts is put together.
   */
  update(parts: Buffer[]): Buffer[] {
    const out: Buffer[] = [];
    for (let p of parts) {
      if (this.rest.length > 0) {
        const need = BLOCK - this.rest.length;
        if (p.length < need) {
          this.rest = Buffer.concat([this.rest, p]);
          continue;
        }
        out.push(this.whole(Buffer.concat([this.rest, p.subarray(0, need)])));
        this.rest = EMPTY;
        p = p.subarray(need);
      }
      const whole = p.length - (p.length % BLOCK);
      if (whole > 0) out.push(this.whole(p.subarray(0, whole)));
      if (whole < p.length) this.rest = Buffer.from(p.subarray(whole));
    }
    return out;
  }

  /** Decrypt `ct`, whole blocks. */
  private whole(ct: Buffer): Buffer {
    const ks = this.ecb.update(ct);
    if (ks.length !== ct.length) throw new Error(`AES-ECB returned ${ks.length} bytes for ${ct.length}`);
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
  const p = Buffer.concat([...d.update([c]), d.final()]);
  return p[BLOCK - 2] === p[BLOCK] && p[BLOCK - 1] === p[BLOCK + 1];
}

/**
 * CFB decryption of a SEIPD body with the SHA-1 of its plaintext for the MDC, both run on
 * libuv's thread pool by native/fspool_cfb.c: while one chunk is decrypted and hashed there, the
 * thread that called passes on (decompresses, writes) the chunk before. SHA-1 covers all the
 * plaintext but its last 20 bytes, which are the MDC's hash.
 */
class CfbStream {
  private readonly ctx: object;
  /** Ciphertext of an incomplete block, waiting for the rest. */
  private rest = EMPTY;
  /** The last ciphertext block so far (at the start, the zero IV). */
  private prev = Buffer.alloc(BLOCK);
  /** Plaintext buffers used in turn while `reuse` says so: one is read while the other is written. */
  private readonly spare: Buffer[] = [];

  constructor(
    cipher: string,
    key: Uint8Array,
    private readonly reuse: () => boolean,
  ) {
    this.ctx = cfbNative().cfbNew(Number(/\d+/.exec(cipher)![0]), Buffer.from(key));
  }

  /** The plaintext of `parts` (pieces of ciphertext, in order), as far as whole blocks go. */
  async update(parts: Buffer[]): Promise<Buffer[]> {
    const cts = wholeBlocks(parts, this);
    const size = cts.reduce((n, ct) => n + ct.length, 0);
    if (size === 0) return [];
    // All of this call's plaintext in one buffer: the reader is done with the last call's by now.
    let room: Buffer;
    if (this.reuse()) {
      let b = this.spare.length >= 2 ? this.spare.shift() : undefined;
      if (!b || b.length < size) b = Buffer.allocUnsafeSlow(Math.max(size, 256 * 1024));
      this.spare.push(b);
      room = b;
    } else {
      room = Buffer.allocUnsafeSlow(size);
    }
    const pt = room.subarray(0, size);
    // All the pieces in one job: one hand-over to the thread pool and back per read.
    await cfbNative().cfbDecrypt(this.ctx, cts, this.prev, pt);
    const last = cts[cts.length - 1]!;
    this.prev = Buffer.from(last.subarray(last.length - BLOCK));
    return [pt];
  }

  /** Ciphertext left over from update(), an incomplete block. */
  get pending(): Buffer {
    return this.rest;
  }

  set pending(b: Buffer) {
    this.rest = b;
  }

  /** The plaintext of the last, incomplete block. */
  final(): Buffer {
    return cfbNative().cfbFinal(this.ctx, this.rest, this.prev);
  }

  /** SHA-1 of all the plaintext but its last 20 bytes (after final). */
  digest(): Buffer {
    return cfbNative().cfbDigest(this.ctx);
  }
}

/**
 * The whole blocks of `parts`, each part where it lies (a read spans two SEIPD parts as a rule:
 * no joining copy); only a block split between parts is put together. What is left (under a
 * block) stays in `carry.pending`.
 */
function wholeBlocks(parts: Buffer[], carry: { pending: Buffer }): Buffer[] {
  const out: Buffer[] = [];
  for (let p of parts) {
    if (carry.pending.length > 0) {
      const need = BLOCK - carry.pending.length;
      if (p.length < need) {
        carry.pending = Buffer.concat([carry.pending, p]);
        continue;
      }
      out.push(Buffer.concat([carry.pending, p.subarray(0, need)]));
      carry.pending = EMPTY;
      p = p.subarray(need);
    }
    const whole = p.length - (p.length % BLOCK);
    if (whole > 0) out.push(p.subarray(0, whole));
    if (whole < p.length) carry.pending = Buffer.from(p.subarray(whole));
  }
  return out;
}

/** Strips the prefix and the MDC packet off the plaintext; checks the MDC at the end against the SHA-1 of the rest. */
class MdcCheck {
  private prefixLeft = PREFIX;
  /** The last MDC bytes seen: the MDC packet, once the input has ended. */
  private tail = EMPTY;

  push(p: Buffer): Buffer[] {
    if (this.prefixLeft > 0) {
      const n = Math.min(this.prefixLeft, p.length);
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
    return out.filter((b) => b.length > 0);
  }

  /** `digest`: SHA-1 of the prefix, the plaintext and the MDC packet's header. */
  end(digest: Buffer): void {
    const t = this.tail;
    if (this.prefixLeft > 0 || t.length < MDC || t[0] !== 0xd3 || t[1] !== 0x14) throw new Error('the modification detection code (MDC) is missing');
    if (!digest.equals(t.subarray(2))) throw new Error('modification detected: the MDC does not match');
  }
}

/**
 * Node's names of the hash algorithms a one-pass signature packet may announce: all but MD5 (1)
 * and RIPEMD-160 (3), which openpgp.js refuses in signatures (its rejectHashAlgorithms).
 */
const HASHES: Record<number, string> = Object.fromEntries(Object.entries(HASH_NAMES).filter(([id]) => id !== '1' && id !== '3'));
/**
 * What may follow the literal data packet (its signature packets, and whatever openpgp.js
 * ignores, such as padding) is held until the end, so it is bounded; more is refused.
 */
const TAIL_LIMIT = 64 * 1024;
/**
 * One-pass packets before it: at most this many, in at most this many bytes, or it is not our
 * shape. The start is joined and re-read with each chunk until it is decided, so it stays small.
 */
const ONE_PASS_MAX = 16;
const PRELUDE_LIMIT = 4096;
/** The literal data packet's own fields before its content: format, name length, name (up to 255), date. */
const literalFieldsLength = (fields: Buffer) => (fields.length < 2 ? 2 : 6 + fields[1]!);

/**
 * Reads a message whose literal content has been taken out (`skeleton`), the way openpgp.js
 * reads that message: at the top level (signed, not encrypted), or as the plaintext of a SEIPD
 * packet.
 */
type Judge = (skeleton: Buffer) => Promise<Message<Uint8Array>>;

/**
 * The plaintext message. Unwrapped here: one literal data packet, optionally signed the way
 * fspool, openpgp.js and gpg sign (one-pass signature packets before it, version 3, over binary
 * data; the signature packets after it). The literal packet's format, file name and date are
 * dropped, as openpgp.js's `format: 'binary'` does. Any other start is passed on whole, for
 * openpgp.js; that is decided before any plaintext is passed on.
 *
 * At the end, everything but the literal's content is handed to openpgp.js as a message of its
 * own (the "skeleton": the one-pass packets, the literal packet with its fields and no content,
 * and all that followed it), so that openpgp.js itself judges the packet sequence and every
 * packet in it, as it would the whole message. Its signatures are verified by openpgp.js too,
 * each given the digest of the content (hashed here as it streamed, one hash per algorithm the
 * one-pass packets announce, only when there are keys to verify with) so that it never hashes
 * the skeleton's empty content.
 */
class InnerMessage {
  kind: 'literal' | 'message' | undefined;
  private head = EMPTY;
  /** The one-pass signature packets, as they came. */
  private prelude = EMPTY;
  private onePassCount = 0;
  private readonly hashes = new Map<number, Hash>();
  private body: BodyFramer | undefined;
  /** The literal body's fields before the content. */
  private fields = EMPTY;
  /** What follows the literal packet. */
  private tail: Buffer[] = [];
  private tailLength = 0;
  private verdicts: Array<string | undefined> = [];

  constructor(
    private readonly pgp: OpenPGP,
    private readonly verificationKeys: Key[],
    private readonly judge: Judge,
  ) {}

  push(p: Buffer): Buffer[] {
    if (this.kind === 'message') return [p];
    if (this.kind === undefined) {
      this.head = this.head.length ? Buffer.concat([this.head, p]) : p;
      const literal = this.preludeEnd();
      if (literal === undefined) return [];
      if (literal === 'message') {
        this.kind = 'message';
        const all = this.head;
        this.head = EMPTY;
        return [all];
      }
      this.kind = 'literal';
      // Copies (small), here and of what follows the literal: a subarray would keep a whole chunk alive.
      this.prelude = Buffer.from(this.head.subarray(0, literal.at.at));
      this.onePassCount = literal.at.hashes.length;
      this.body = new BodyFramer(literal.head.body);
      p = this.head.subarray(literal.at.at + literal.head.size);
      this.head = EMPTY;
      if (this.verificationKeys.length) for (const alg of literal.at.hashes) if (!this.hashes.has(alg)) this.hashes.set(alg, createHash(HASHES[alg]!));
    }
    const { body, after } = this.body!.push(p);
    if (after && after.length > 0) {
      this.tail.push(Buffer.from(after));
      this.tailLength += after.length;
      if (this.tailLength > TAIL_LIMIT) throw new Error(`more than ${TAIL_LIMIT >> 10} KiB after the literal data packet (signatures take less)`);
    }
    const out: Buffer[] = [];
    for (let b of body) {
      while (b.length > 0 && this.fields.length < literalFieldsLength(this.fields)) {
        const n = Math.min(literalFieldsLength(this.fields) - this.fields.length, b.length);
        this.fields = Buffer.concat([this.fields, b.subarray(0, n)]);
        b = b.subarray(n);
      }
      if (b.length === 0) continue;
      for (const h of this.hashes.values()) h.update(b);
      out.push(b);
    }
    return out;
  }

  /**
   * Read the one-pass signature packets at the start of `head`, up to the literal packet: where
   * it is and the hash algorithms announced, 'message' if the message is not our shape,
   * undefined if more bytes are needed.
   */
  private preludeEnd(): { at: { at: number; hashes: number[] }; head: PacketHead } | 'message' | undefined {
    let at = 0;
    const hashes: number[] = [];
    const more = () => (this.head.length > PRELUDE_LIMIT ? 'message' : undefined);
    for (;;) {
      let h: PacketHead | undefined;
      try {
        h = readPacketHead(this.head, at);
      } catch {
        return 'message';
      }
      if (!h) return more();
      if (h.tag === TAG.LITERAL) return { at: { at, hashes }, head: h };
      if (h.tag !== TAG.ONE_PASS || h.body.kind !== 'definite' || h.body.length !== 13) return 'message';
      if (this.head.length < at + h.size + 13) return more();
      const b = this.head.subarray(at + h.size, at + h.size + 13);
      // Version 3 goes with version 4 signatures; signatures over binary data only.
      if (b[0] !== 3 || b[1] !== 0 || HASHES[b[2]!] === undefined || hashes.length === ONE_PASS_MAX) return 'message';
      hashes.push(b[2]!);
      at += h.size + 13;
    }
  }

  /** The bytes it was given while it could not yet tell the message's shape. */
  undecided(): Buffer {
    return this.head;
  }

  /** At the end of the plaintext: throws if openpgp.js would refuse the message. */
  async end(): Promise<void> {
    // No literal packet yet: openpgp.js refuses such a message too (it needs exactly one).
    if (this.kind === undefined) throw new Error(this.head.length ? 'the message is truncated' : 'the message is empty');
    if (this.kind === 'message') return;
    this.body!.end();
    const skeleton = Buffer.concat([this.prelude, Buffer.from([0xc0 | TAG.LITERAL]), definiteLength(this.fields.length), this.fields, ...this.tail]);
    // The common faults, in our words: as many signatures as one-pass packets, or else nothing
    // but signature packets after the literal (openpgp.js refuses these too).
    const tail = Buffer.concat(this.tail);
    const signatures = countSignatures(tail);
    if (signatures !== undefined && signatures !== this.onePassCount) throw new Error(`${this.onePassCount} one-pass signature packet(s) but ${signatures} signature(s)`);
    let read: PacketList<AnyPacket>;
    try {
      read = await allPackets(this.pgp, await this.judge(skeleton));
    } catch (e) {
      throw signatures === undefined ? new Error(`data after the literal data packet that is not a signature: ${(e as Error).message}`) : e;
    }
    const message = new this.pgp.Message(read);
    // verify() reads the signature packets of this list, which is whole (not streamed): each must
    // have its digest set, or openpgp.js would hash the skeleton's empty content. The packet
    // sequence rules leave no compressed packet here, whose packets verify() would read instead.
    const packets = message.packets;
    if (packets.some((p) => p instanceof this.pgp.CompressedDataPacket)) throw new Error('a compressed packet after the literal data packet');
    for (const sig of packets.filterByTag(this.pgp.enums.packet.signature) as unknown as SignaturePacket[]) {
      (sig as SignaturePacket & { hashed?: Promise<Uint8Array> }).hashed = this.digest(sig);
    }
    // Throws, as in openpgp.js's decrypt() and verify(), unless there is exactly one literal packet.
    const verifications = await message.verify(this.verificationKeys);
    this.verdicts = await Promise.all(
      verifications.map((v: { verified: Promise<true> }) =>
        v.verified.then(
          () => undefined,
          (e: unknown) => (e as Error).message,
        ),
      ),
    );
  }

  /**
   * The digest a signature packet signs (RFC 4880 §5.2.4): the content, the signature's hashed
   * part, its v4 trailer. openpgp.js's own one-pass verification hands the signature its digest
   * the same way (OnePassSignaturePacket.verify sets `hashed`). A signature this cannot hash (over
   * text, of another version, or with a hash no one-pass packet announced) fails, with why.
   */
  private digest(sig: SignaturePacket): Promise<Uint8Array> {
    const h = this.hashes.get(sig.hashAlgorithm!);
    if (sig.version !== 4 || sig.signatureType !== this.pgp.enums.signature.binary || !h) {
      const why = !this.verificationKeys.length
        ? 'no keys to verify with'
        : `a version ${sig.version} signature of type ${sig.signatureType} with hash ${sig.hashAlgorithm} is not checked here (binary version 4 signatures with the hash their one-pass packet announced are)`;
      const failed = Promise.reject(new Error(why));
      failed.catch(() => {}); // awaited only if openpgp.js gets that far
      return failed;
    }
    const d = h.copy();
    const data = sig.signatureData!;
    d.update(data);
    const trailer = Buffer.from([4, 0xff, 0, 0, 0, 0]);
    trailer.writeUInt32BE(data.length, 2);
    d.update(trailer);
    return Promise.resolve(d.digest());
  }

  /** After end(): for each signature, undefined if it verified against one of the keys, else why not. */
  async signatures(): Promise<Array<string | undefined>> {
    return this.verdicts;
  }
}

/** How many packets `tail` holds if it is nothing but whole signature packets, else undefined. */
function countSignatures(tail: Buffer): number | undefined {
  let n = 0;
  for (let at = 0; at < tail.length; n++) {
    let h: PacketHead | undefined;
    try {
      h = readPacketHead(tail, at);
    } catch {
      return undefined;
    }
    if (!h || h.tag !== TAG.SIGNATURE || h.body.kind !== 'definite' || at + h.size + h.body.length > tail.length) return undefined;
    at += h.size + h.body.length;
  }
  return n;
}

/**
 * Every packet of a message openpgp.js read from bytes. It returns those up to the first data
 * packet in the list, and the rest through the list's `stream` (a reader that fails if they did
 * not parse, or broke its packet sequence rules).
 */
async function allPackets(pgp: OpenPGP, message: Message<Uint8Array>): Promise<PacketList<AnyPacket>> {
  const list = new pgp.PacketList<AnyPacket>();
  list.push(...message.packets);
  type Reader = { read(): Promise<{ done: boolean; value?: AnyPacket }> };
  const rest = (message.packets as unknown as { stream?: { getReader(): Reader } | null }).stream;
  if (rest) {
    const reader = rest.getReader();
    for (let r = await reader.read(); !r.done; r = await reader.read()) list.push(r.value!);
  }
  return list;
}

/**
 * The message `skeleton` as openpgp.js reads the plaintext of a SEIPD packet (its rules for that
 * packet sequence are not exported): sealed under a throwaway key, and decrypted by openpgp.js.
 */
async function asSeipdPlaintext(pgp: OpenPGP, skeleton: Buffer): Promise<Message<Uint8Array>> {
  const key = crypto().randomBytes(16);
  const prefix = crypto().randomBytes(BLOCK);
  const plain = Buffer.concat([prefix, prefix.subarray(BLOCK - 2), skeleton, Buffer.from([0xd3, 0x14])]);
  const c = crypto().createCipheriv('aes-128-cfb', key, Buffer.alloc(BLOCK));
  const body = Buffer.concat([Buffer.from([1]), c.update(plain), c.update(createHash('sha1').update(plain).digest()), c.final()]);
  // Typed by openpgp.js as write-only; decrypt() and packets are what its Message.decrypt uses.
  const packet = new pgp.SymEncryptedIntegrityProtectedDataPacket() as unknown as {
    read(b: Uint8Array): Promise<void>;
    decrypt(algorithm: number, key: Uint8Array): Promise<boolean>;
    packets: PacketList<AnyPacket>;
  };
  await packet.read(body);
  await packet.decrypt(pgp.enums.symmetric.aes128, key);
  return new pgp.Message(packet.packets);
}

/**
 * Bytes after the SEIPD packet: openpgp.js ignores some packets there (marker, padding, unknown
 * non-critical ones) and refuses the rest. It judges them in their place, after the session key
 * packets and a SEIPD packet with no content.
 */
async function judgeTrailer(pgp: OpenPGP, sessionKeyPackets: Buffer, trailer: Buffer): Promise<void> {
  try {
    await pgp.readMessage({ binaryMessage: Buffer.concat([sessionKeyPackets, Buffer.from([0xc0 | TAG.SEIPD, 1, 1]), trailer]) });
  } catch (e) {
    throw new Error(`data after the encrypted packet: ${(e as Error).message}`);
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
/**
 * `reuse`: may the plaintext's buffers be overwritten once the next chunk is asked for (its
 * reader keeps nothing; see decodeChunks)? Then two are used in turn.
 */
export async function openSeipd(src: AsyncIterable<Buffer>, pgp: OpenPGP, material: DecryptionMaterial, reuse?: () => boolean): Promise<Unwrapped> {
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
  /** What follows the SEIPD packet; openpgp.js judges it at the end (it ignores padding, say). */
  const trailer: Buffer[] = [];
  let trailerLength = 0;
  const take = (chunk: Buffer) => {
    const { body, after } = framer.push(chunk);
    for (const b of body) start.push(b);
    have += body.reduce((n, b) => n + b.length, 0);
    if (after && after.length > 0) {
      trailer.push(Buffer.from(after));
      trailerLength += after.length;
    }
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
  const many = tooManySessionKeys(message);
  if (many) throw new Error(many);
  const toKeys = message.getEncryptionKeyIDs().length > 0 && material.decryptionKeys.length > 0;
  if (!toKeys) fastS2K(message);
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
  const mdc = new MdcCheck();
  const inner = new InnerMessage(pgp, material.verificationKeys, (skeleton) => asSeipdPlaintext(pgp, skeleton));
  // Only literal data passes on plaintext that is not kept (openpgp.js reads anything else).
  const dec = new CfbStream(AES_CIPHERS[key.algorithm!]!, key.data, () => inner.kind === 'literal' && reuse?.() === true);
  const out: Buffer[] = [];
  const feed = (pt: Buffer) => {
    for (const p of mdc.push(pt)) for (const b of inner.push(p)) out.push(b);
  };
  /** Read the next chunk and decrypt it; undefined once the input has ended. */
  const fetch = async (): Promise<Buffer[] | undefined> => {
    const chunk = await read();
    if (!chunk) return undefined;
    take(chunk);
    if (trailerLength > TAIL_LIMIT) throw new Error(`more than ${TAIL_LIMIT >> 10} KiB after the encrypted packet`);
    return dec.update(start.splice(0));
  };
  /** The next chunk, already being decrypted on the thread pool while this one is passed on. */
  let ahead: Promise<Buffer[] | undefined> | undefined;
  let finished = false;
  /** Decrypt the next chunk of input into `out`; false once the input has ended and all checked out. */
  const step = async (): Promise<boolean> => {
    if (finished) return false;
    const pts = await (ahead ?? fetch());
    ahead = undefined;
    if (!pts) {
      finished = true;
      framer.end();
      feed(dec.final());
      mdc.end(dec.digest());
      await inner.end();
      if (trailerLength > 0) await judgeTrailer(pgp, sessionKeyPackets, Buffer.concat(trailer));
      return false;
    }
    ahead = fetch();
    ahead.catch(() => {}); // its failure is the next step's
    for (const pt of pts) feed(pt);
    return true;
  };
  let failure: unknown;
  try {
    for (const pt of await dec.update([body.subarray(1)])) feed(pt);
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
  const inner = new InnerMessage(pgp, material.verificationKeys, async (skeleton) => pgp.readMessage({ binaryMessage: skeleton }));
  const out: Buffer[] = [];
  let finished = false;
  const step = async (): Promise<boolean> => {
    if (finished) return false;
    const r = await it.next();
    if (r.done) {
      finished = true;
      await inner.end();
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
