// OpenPGP in-process, streaming: the common shapes (encrypted with SEIPD v1 and AES, signed
// with one-pass signatures, or both) by src/codec/seipd.ts, the rest by openpgp.js.
//
// openpgp.js by default holds back the whole plaintext until the integrity check at the end
// (GiBs of memory for a GiB payload). We let it stream (`allowUnauthenticatedStream`) and make
// the EOF rule carry the safety: the plaintext reaches the receiver as it is decrypted, but
// the receiver sees EOF only after the iteration ended without error (MDC checked) and every
// required signature verified; otherwise it is killed first (src/run/deliver.ts).
import type { Message } from 'openpgp';
import { FspoolError } from '../errors.js';
import { fromWebStream, peek, toWebStream } from './chunks.js';
import { isNoSessionKey, noSessionKey, tooManySessionKeys } from './decryptError.js';
import { fastS2K } from './s2k.js';
import { type DecryptionMaterial, type Keyring, openpgp } from './keys.js';
import { openLiteral, openSeipd, type Unwrapped } from './seipd.js';
import { openpgpTag, SNIFF_BYTES } from './sniff.js';

type OpenPGP = typeof import('openpgp');

/** Tags of packets that mean "encrypted": PKESK, SKESK, SED, SEIPD, AEAD. */
const ENCRYPTED_TAGS = new Set([1, 3, 9, 18, 20]);
/** Session key packets: PKESK, SKESK. */
const ESK_TAGS = new Set([1, 3]);
/** What a message that is not encrypted may start with, for src/codec/seipd.ts: one-pass signature, literal data. */
const PLAIN_TAGS = new Set([4, 11]);

export class OpenPGPError extends FspoolError {
  override name = 'OpenPGPError';
}

/** An encrypted packet, and no key or passphrase at all to try on it. */
export class NoKeyError extends OpenPGPError {
  override name = 'NoKeyError';
}

export interface OpenPGPLayer {
  plaintext: AsyncIterable<Buffer>;
  /**
   * Done with each chunk of its input before it asks for the next, keeping nothing of it (the
   * fast path); openpgp.js's streams may keep what they were given.
   */
  atOnce?: boolean;
  /**
   * After the plaintext has been read to its end: the verdict of each signature in this layer,
   * undefined for one that verified against an accepted key, else why not. Whether a packet is
   * signed well enough is decided over all its layers (src/codec/decode.ts).
   */
  signatures(): Promise<Array<string | undefined>>;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).replace(/^Error (decrypting|verifying) (message|session keys): /, '');

/**
 * What openpgp.js reads by itself (the messages that are not the shapes src/codec/seipd.ts
 * reads: compressed, signed over text, another cipher than AES, ...) it reads whole, as its
 * default does, if the message is at most this big and decompresses to at most
 * DECOMPRESSED_LIMIT; else streaming, as far as that is safe (openEncrypted).
 */
const WHOLE_LIMIT = 2 << 20;
const DECOMPRESSED_LIMIT = 8 << 20;

/**
 * Open an OpenPGP message (binary or armored). `head` is its first bytes, used to tell an
 * encrypted message from a signed-only one.
 */
export async function openpgpLayer(src: AsyncIterable<Buffer>, head: Buffer, keys: Keyring, reuse?: () => boolean): Promise<OpenPGPLayer> {
  const pgp = await openpgp();
  const material = await keys.load();
  if (head.toString('latin1').trimStart().startsWith('-----BEGIN')) {
    // Armor is undone first (openpgp.js's unarmor, streaming; its checksum fails at the end),
    // so that the binary message inside is read like any other.
    const binary = await peek(await dearmor(pgp, src), SNIFF_BYTES);
    if (binary.head.length === 0) throw new OpenPGPError('not a readable OpenPGP message: the armor holds nothing');
    return openBinary(pgp, material, binary.all, binary.head);
  }
  return openBinary(pgp, material, src, head, reuse);
}

/** `reuse`: may the plaintext's buffers be overwritten once the next chunk is asked for (see decodeChunks)? */
async function openBinary(pgp: OpenPGP, material: DecryptionMaterial, src: AsyncIterable<Buffer>, head: Buffer, reuse?: () => boolean): Promise<OpenPGPLayer> {
  const firstTag = openpgpTag(head[0]!);
  if (firstTag !== undefined && ESK_TAGS.has(firstTag)) {
    // The common encrypted shape, decrypted without openpgp.js's streams (src/codec/seipd.ts).
    requireKeys(material);
    let opened: Unwrapped;
    try {
      opened = await openSeipd(src, pgp, material, reuse);
    } catch (e) {
      throw new OpenPGPError(`cannot decrypt OpenPGP packet: ${message(e)}`);
    }
    if (opened.kind === 'plaintext') {
      // A wrong session key (a passphrase has no check to fail) decrypts to garbage that now and
      // then begins like a literal data packet: then it is the rest that fails, here.
      const plaintext = tampered(opened.plaintext, 'OpenPGP packet is corrupt or was tampered with, or a wrong key or passphrase decrypted it');
      if (opened.literal) return { plaintext, signatures: opened.signatures, atOnce: true };
      // Compressed inside, say: openpgp.js reads the decrypted message. Garbage there is what a
      // wrong key makes (the prefix's check bytes are not used to say so: src/codec/seipd.ts).
      try {
        return await openSigned(pgp, material, plaintext);
      } catch (e) {
        throw new OpenPGPError(`cannot decrypt OpenPGP packet: it does not decrypt to an OpenPGP message (wrong key or passphrase, or a damaged packet): ${message(e)}`);
      }
    }
    return openEncrypted(pgp, material, opened.input);
  }
  if (firstTag !== undefined && PLAIN_TAGS.has(firstTag)) {
    // Signed or bare literal data, the same way.
    const opened = await openLiteral(src, pgp, material);
    if (opened.kind === 'plaintext') return { plaintext: tampered(opened.plaintext), signatures: opened.signatures, atOnce: true };
    src = opened.input;
  }
  if (firstTag !== undefined && ENCRYPTED_TAGS.has(firstTag)) return openEncrypted(pgp, material, src);
  return openSigned(pgp, material, src);
}

/** openpgp.js's reading of a message's packets, its refusal in fspool's words. */
async function readMessage(pgp: OpenPGP, input: Parameters<OpenPGP['readMessage']>[0]['binaryMessage'], config: Parameters<OpenPGP['readMessage']>[0]['config']): Promise<Message<Uint8Array>> {
  try {
    return (await pgp.readMessage({ binaryMessage: input, config })) as Message<Uint8Array>;
  } catch (e) {
    throw new OpenPGPError(`not a readable OpenPGP message: ${message(e)}`);
  }
}

/** The binary message inside ASCII armor, as it is read. */
async function dearmor(pgp: OpenPGP, src: AsyncIterable<Buffer>): Promise<AsyncIterable<Buffer>> {
  let data: ReadableStream<Uint8Array>;
  try {
    const armor = await pgp.unarmor(toWebStream(latin1(src)) as unknown as string);
    if (armor.type !== pgp.enums.armor.message) throw new Error('Armored text not of type message');
    data = armor.data as unknown as ReadableStream<Uint8Array>;
  } catch (e) {
    throw new OpenPGPError(`not a readable OpenPGP message: ${message(e)}`);
  }
  return tampered(fromWebStream(data));
}

function requireKeys(material: DecryptionMaterial): void {
  if (material.decryptionKeys.length === 0 && material.passwords.length === 0) {
    throw new NoKeyError('encrypted packet and no key to decrypt it: give --decrypt-key FILE or --passphrase-file FILE, or put the secret key in ~/.config/fspool/keys/ (README, "Compressed, encrypted and signed packets")');
  }
}

/** A failure while reading the plaintext means the packet is damaged; say so. */
async function* tampered(src: AsyncIterable<Buffer>, what = 'OpenPGP packet is corrupt or was tampered with'): AsyncGenerator<Buffer> {
  try {
    yield* src;
  } catch (e) {
    if (e instanceof OpenPGPError) throw e;
    throw new OpenPGPError(`${what}: ${message(e)}`);
  }
}

/**
 * openpgp.js reads a message that is not encrypted (or that fspool decrypted) and verifies what it
 * can. Streaming (a large message), it judges a few odd messages otherwise than whole: it refuses
 * one-pass packets of unknown types, and pairs one-pass and signature packets by their order.
 */
async function openSigned(pgp: OpenPGP, material: DecryptionMaterial, src: AsyncIterable<Buffer>): Promise<OpenPGPLayer> {
  return readByOpenpgp(src, async (input, config) => {
    const msg = await readMessage(pgp, input, config);
    try {
      const result = await pgp.verify({ message: msg, verificationKeys: material.verificationKeys, format: 'binary', config });
      return layerOf(result.data as unknown as Uint8Array | ReadableStream<Uint8Array>, result.signatures);
    } catch (e) {
      throw new OpenPGPError(`cannot read OpenPGP packet: ${message(e)}`);
    }
  });
}

/**
 * openpgp.js decrypts a message that is not the common shape: whole if it is small, else
 * streaming only if it is AEAD-protected (SEIPD v2, AEAD packet). Decrypting a SEIPD v1 packet
 * streaming, openpgp.js 6.3.2 can wait forever on a damaged message (it holds an error back
 * until it has read all input, while packets wait for a reader that never comes), and a SEIPD v1
 * packet's plaintext is unauthenticated until its end anyway.
 */
async function openEncrypted(pgp: OpenPGP, material: DecryptionMaterial, src: AsyncIterable<Buffer>): Promise<OpenPGPLayer> {
  requireKeys(material);
  return readByOpenpgp(src, async (input, config) => {
    const msg = await readMessage(pgp, input, config);
    if (config.allowUnauthenticatedStream) {
      // readMessage stops at the first data packet: the last in the list.
      const data = msg.packets[msg.packets.length - 1] as { version?: number } | undefined;
      const tag = data && (data.constructor as unknown as { tag: number }).tag;
      const aead = tag === pgp.enums.packet.aeadEncryptedData || (tag === pgp.enums.packet.symEncryptedIntegrityProtectedData && data!.version === 2);
      if (!aead) {
        throw new OpenPGPError(
          `cannot decrypt OpenPGP packet: it is larger than ${WHOLE_LIMIT >> 20} MiB (or decompresses to more than ${DECOMPRESSED_LIMIT >> 20} MiB) and neither the common shape (a SEIPD v1 packet with AES after the session key packets) nor AEAD-protected; decode it with -d 'gpg -q -d'`,
        );
      }
    }
    const many = tooManySessionKeys(msg);
    if (many) throw new OpenPGPError(`cannot decrypt OpenPGP packet: ${many}`);
    try {
      // openpgp.js tries only the passwords when it is given both: offer the keys when the
      // message is encrypted to public keys (PKESK) and we have some, else the passwords.
      const toKeys = msg.getEncryptionKeyIDs().length > 0 && material.decryptionKeys.length > 0;
      if (!toKeys) fastS2K(msg);
      const result = await pgp.decrypt({
        message: msg,
        ...(toKeys ? { decryptionKeys: material.decryptionKeys } : { passwords: material.passwords }),
        verificationKeys: material.verificationKeys,
        format: 'binary',
        config,
      });
      return layerOf(result.data as unknown as Uint8Array | ReadableStream<Uint8Array>, result.signatures);
    } catch (e) {
      // openpgp.js's words for "no session key opened" (a wrong key or passphrase); ours say whom for.
      throw new OpenPGPError(`cannot decrypt OpenPGP packet: ${isNoSessionKey(e) ? noSessionKey(msg, material) : message(e)}`);
    }
  });
}

type Config = { allowUnauthenticatedStream: boolean; maxDecompressedMessageSize?: number };

/**
 * Let openpgp.js read `src` with `read`: whole if it ends within WHOLE_LIMIT bytes and
 * decompresses to at most DECOMPRESSED_LIMIT, else streaming (plaintext released before the
 * integrity check: the EOF rule makes that safe).
 */
async function readByOpenpgp(src: AsyncIterable<Buffer>, read: (input: Uint8Array | ReadableStream<Uint8Array>, config: Config) => Promise<OpenPGPLayer>): Promise<OpenPGPLayer> {
  const it = src[Symbol.asyncIterator]();
  const taken: Buffer[] = [];
  let size = 0;
  while (size <= WHOLE_LIMIT) {
    const r = await it.next();
    if (r.done) {
      const whole = Buffer.concat(taken.splice(0));
      try {
        return await read(whole, { allowUnauthenticatedStream: false, maxDecompressedMessageSize: DECOMPRESSED_LIMIT });
      } catch (e) {
        if (!/Maximum decompressed message size exceeded/.test(message(e))) throw e;
      }
      return read(toWebStream(once(whole)), { allowUnauthenticatedStream: true });
    }
    taken.push(r.value);
    size += r.value.length;
  }
  try {
    return await read(toWebStream(replay(taken, it)), { allowUnauthenticatedStream: true });
  } catch (e) {
    await it.return?.();
    throw e;
  }
}

async function* replay(taken: Buffer[], it: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  yield* taken.splice(0);
  for (;;) {
    const r = await it.next();
    if (r.done) return;
    yield r.value;
  }
}

/** What openpgp.js gave back: the plaintext (whole, or streaming) and the signatures' verdicts. */
function layerOf(data: Uint8Array | ReadableStream<Uint8Array>, signatures: Array<{ verified: Promise<true> }>): OpenPGPLayer {
  // Verdicts of signatures come when the data has been read; never leave one unhandled.
  const verdicts = signatures.map((s) =>
    s.verified.then(
      () => undefined,
      (e: unknown) => message(e),
    ),
  );
  const plaintext = data instanceof Uint8Array ? once(Buffer.from(data.buffer, data.byteOffset, data.byteLength)) : tampered(fromWebStream(data));
  return { plaintext, signatures: () => Promise.all(verdicts) };
}

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  if (b.length > 0) yield b;
}

/**
 * --require-signature over a whole packet: at least one signature, in any OpenPGP layer, made
 * by an accepted key and verified. A packet with no OpenPGP layer, or none signed, is refused;
 * so is one whose only signatures are by other keys or do not verify.
 */
export async function requireSignature(layers: Array<Pick<OpenPGPLayer, 'signatures'>>): Promise<void> {
  const verdicts = (await Promise.all(layers.map((l) => l.signatures()))).flat();
  if (verdicts.length === 0) throw new OpenPGPError('packet is not signed, and --require-signature was given');
  if (verdicts.some((v) => v === undefined)) return;
  throw new OpenPGPError(`no valid signature by an accepted key: ${verdicts.join('; ')}`);
}

async function* latin1(src: AsyncIterable<Buffer>): AsyncGenerator<string> {
  for await (const b of src) yield b.toString('latin1');
}
