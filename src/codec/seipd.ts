// OpenPGP decryption of the common shape without openpgp.js's streams: session key packets
// (PKESK, SKESK), then one SEIPD v1 packet (AES, with MDC) — what fspool prepare, gpg 2.2 and
// openpgp.js write. openpgp.js still decrypts the session key; the bulk work is Node's AES-ECB,
// one pass of C for CFB's XOR (native/fspool_sys.c) and Node's SHA-1 for the MDC. openpgp.js's
// web streams cost ~3 s of CPU per GiB (bench enc-1g), most of it in stream plumbing.
//
// Anything else (SED, AEAD, SEIPD v2, a cipher that is not AES, a malformed start) goes to
// openpgp.js as before: openSeipd() hands the input back whole, the bytes it looked at put back.
//
// Inside, the plaintext is again an OpenPGP message. A lone literal data packet (no signature,
// no compression) is unwrapped here too; anything else is handed back for openpgp.js to read.
//
// Safety is the EOF rule's, as with openpgp.js's streaming (src/codec/openpgp.ts): plaintext is
// handed on as it is decrypted, and the MDC is checked at the end; a mismatch, a truncation or
// trailing garbage makes the iteration throw there, so the receiver is killed before EOF.
import type { Cipher } from 'node:crypto';
import { createHash, crypto } from '../sys/lazy.js';
import { native } from '../sys/native.js';
import type { DecryptionMaterial } from './keys.js';
import { BodyFramer, type PacketHead, readPacketHead } from './pgpFraming.js';

type OpenPGP = typeof import('openpgp');

export type Seipd =
  /** Not the shape handled here: the input, whole again, for openpgp.js. */
  | { kind: 'other'; input: AsyncIterable<Buffer> }
  /**
   * Decrypting. `literal`: the plaintext is the literal data's content; else it is an OpenPGP
   * message (signed, compressed) for openpgp.js to read. The iteration throws, at the point it
   * is found, if the packet is corrupt, truncated or tampered with.
   */
  | { kind: 'decrypted'; literal: boolean; plaintext: AsyncIterable<Buffer> };

/** The session key could not be used: wrong key or passphrase, or a damaged packet. */
export class SessionKeyError extends Error {
  override name = 'SessionKeyError';
}

const TAG = { PKESK: 1, SKESK: 3, LITERAL: 11, SEIPD: 18 } as const;
/** Session key packets are small (an RSA-4096 PKESK is ~520 bytes); more than this is not our shape. */
const ESK_LIMIT = 64 * 1024;
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
    const ct = this.rest.length === 0 && parts.length === 1 ? parts[0]! : Buffer.concat([this.rest, ...parts]);
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

/**
 * The plaintext message: a lone literal data packet is unwrapped to its content (its format,
 * file name and date are dropped, as openpgp.js's `format: 'binary'` does); any other message is
 * passed on whole.
 */
class InnerMessage {
  kind: 'literal' | 'message' | undefined;
  private head = EMPTY;
  private body: BodyFramer | undefined;
  /** Literal body bytes seen; the first 6 + name length are the literal packet's own fields. */
  private pos = 0;
  private nameLength = -1;

  push(p: Buffer): Buffer[] {
    if (this.kind === 'message') return [p];
    if (this.kind === undefined) {
      this.head = this.head.length ? Buffer.concat([this.head, p]) : p;
      let h: PacketHead | undefined;
      try {
        h = readPacketHead(this.head);
      } catch {
        h = { tag: -1, size: 0, body: { kind: 'indeterminate' } };
      }
      if (!h) return [];
      p = this.head;
      this.head = EMPTY;
      if (h.tag !== TAG.LITERAL) {
        this.kind = 'message';
        return [p];
      }
      this.kind = 'literal';
      this.body = new BodyFramer(h.body);
      p = p.subarray(h.size);
    }
    const { body, after } = this.body!.push(p);
    if (after && after.length > 0) throw new Error('data after the literal data packet');
    const out: Buffer[] = [];
    for (const b of body) {
      const start = this.pos;
      this.pos += b.length;
      if (this.nameLength < 0 && start <= 1 && this.pos > 1) this.nameLength = b[1 - start]!;
      const skip = this.nameLength < 0 ? Infinity : 6 + this.nameLength;
      if (this.pos <= skip) continue;
      out.push(start >= skip ? b : b.subarray(skip - start));
    }
    return out;
  }

  end(): void {
    if (this.kind === undefined) throw new Error(this.head.length ? 'the encrypted message is truncated' : 'the encrypted message is empty');
    if (this.kind === 'literal') {
      this.body!.end();
      if (this.nameLength < 0 || this.pos < 6 + this.nameLength) throw new Error('the literal data packet is truncated');
    }
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
export async function openSeipd(src: AsyncIterable<Buffer>, pgp: OpenPGP, material: DecryptionMaterial): Promise<Seipd> {
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
  const other = (): Seipd => ({ kind: 'other', input: replay(seen!, it, ended) });

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
    start.push(...body);
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
  if (body.length < 1 + PREFIX) throw new SessionKeyError('the encrypted packet is truncated');

  const message = await pgp.readMessage({ binaryMessage: sessionKeyPackets });
  const toKeys = message.getEncryptionKeyIDs().length > 0 && material.decryptionKeys.length > 0;
  const candidates = await pgp.decryptSessionKeys({
    message,
    ...(toKeys ? { decryptionKeys: material.decryptionKeys } : { passwords: material.passwords }),
  });
  if (!candidates.some((k) => k.algorithm && AES_CIPHERS[k.algorithm])) return other();
  const prefix = body.subarray(1, 1 + PREFIX);
  const key = candidates.find((k) => k.algorithm && AES_CIPHERS[k.algorithm] && prefixChecks(AES_CIPHERS[k.algorithm]!, k.data, prefix));
  if (!key) throw new SessionKeyError('the session key does not decrypt the packet (wrong key or passphrase, or a damaged packet)');

  // Committed: from here on, this is the decryption.
  seen = undefined;
  const dec = new CfbDecryptor(AES_CIPHERS[key.algorithm!]!, key.data);
  const mdc = new MdcCheck();
  const inner = new InnerMessage();
  let out: Buffer[] = [];
  const feed = (pt: Buffer) => {
    for (const p of mdc.push(pt)) out.push(...inner.push(p));
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
  async function* plaintext(): AsyncGenerator<Buffer> {
    try {
      if (failure !== undefined) throw failure;
      for (;;) {
        const ready = out;
        out = [];
        yield* ready;
        if (!(await step())) break;
      }
      yield* out;
    } finally {
      await it.return?.();
    }
  }
  return { kind: 'decrypted', literal: inner.kind !== 'message', plaintext: plaintext() };
}
