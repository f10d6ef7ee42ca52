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
import { isNoSessionKey, noSessionKey } from './decryptError.js';
import { fromWebStream, toWebStream } from './chunks.js';
import { type DecryptionMaterial, type Keyring, openpgp } from './keys.js';
import { openLiteral, openSeipd, type Unwrapped } from './seipd.js';
import { openpgpTag } from './sniff.js';

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
   * After the plaintext has been read to its end: the verdict of each signature in this layer,
   * undefined for one that verified against an accepted key, else why not. Whether a packet is
   * signed well enough is decided over all its layers (src/codec/decode.ts).
   */
  signatures(): Promise<Array<string | undefined>>;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).replace(/^Error (decrypting|verifying) (message|session keys): /, '');

/**
 * Open an OpenPGP message (binary or armored). `head` is its first bytes, used to tell an
 * encrypted message from a signed-only one.
 */
export async function openpgpLayer(src: AsyncIterable<Buffer>, head: Buffer, keys: Keyring): Promise<OpenPGPLayer> {
  const pgp = await openpgp();
  const material = await keys.load();
  const armored = head.toString('latin1').trimStart().startsWith('-----BEGIN');
  const firstTag = armored ? undefined : openpgpTag(head[0]!);
  if (firstTag !== undefined && ESK_TAGS.has(firstTag)) {
    // The common encrypted shape, decrypted without openpgp.js's streams (src/codec/seipd.ts).
    requireKeys(material);
    let opened: Unwrapped;
    try {
      opened = await openSeipd(src, pgp, material);
    } catch (e) {
      throw new OpenPGPError(`cannot decrypt OpenPGP packet: ${message(e)}`);
    }
    if (opened.kind === 'plaintext') {
      const plaintext = tampered(opened.plaintext);
      if (opened.literal) return { plaintext, signatures: opened.signatures };
      // Compressed inside, say: openpgp.js reads the decrypted message. Garbage there is what a
      // wrong key makes (the prefix's check bytes are not used to say so: src/codec/seipd.ts).
      try {
        return await openMessage(pgp, material, plaintext, false, false);
      } catch (e) {
        throw new OpenPGPError(`cannot decrypt OpenPGP packet: it does not decrypt to an OpenPGP message (wrong key or passphrase, or a damaged packet): ${message(e)}`);
      }
    }
    src = opened.input;
  } else if (firstTag !== undefined && PLAIN_TAGS.has(firstTag)) {
    // Signed or bare literal data, the same way.
    const opened = await openLiteral(src, pgp, material);
    if (opened.kind === 'plaintext') return { plaintext: tampered(opened.plaintext), signatures: opened.signatures };
    src = opened.input;
  }
  return openMessage(pgp, material, src, armored, firstTag !== undefined && ENCRYPTED_TAGS.has(firstTag));
}

function requireKeys(material: DecryptionMaterial): void {
  if (material.decryptionKeys.length === 0 && material.passwords.length === 0) {
    throw new NoKeyError('encrypted packet and no key to decrypt it: give --decrypt-key FILE or --passphrase-file FILE, or put the secret key in ~/.config/fspool/keys/ (README, "Compressed, encrypted and signed packets")');
  }
}

/** A failure while reading the plaintext means the packet is damaged; say so. */
async function* tampered(src: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  try {
    yield* src;
  } catch (e) {
    if (e instanceof OpenPGPError) throw e;
    throw new OpenPGPError(`OpenPGP packet is corrupt or was tampered with: ${message(e)}`);
  }
}

/** openpgp.js reads the message: decrypts it if `encrypted`, else verifies what it can. */
async function openMessage(pgp: OpenPGP, material: DecryptionMaterial, src: AsyncIterable<Buffer>, armored: boolean, encrypted: boolean): Promise<OpenPGPLayer> {
  const config = { allowUnauthenticatedStream: true };
  let msg: Message<ReadableStream<Uint8Array>>;
  try {
    msg = armored
      ? ((await pgp.readMessage({ armoredMessage: toWebStream(latin1(src)) as unknown as ReadableStream<string>, config })) as unknown as Message<ReadableStream<Uint8Array>>)
      : await pgp.readMessage({ binaryMessage: toWebStream(src), config });
  } catch (e) {
    throw new OpenPGPError(`not a readable OpenPGP message: ${message(e)}`);
  }
  if (armored) {
    const tag = msg.packets[0]?.constructor && (msg.packets[0].constructor as unknown as { tag: number }).tag;
    encrypted = tag !== undefined && ENCRYPTED_TAGS.has(tag);
  }
  let result;
  try {
    if (encrypted) {
      requireKeys(material);
      // openpgp.js tries only the passwords when it is given both: offer the keys when the
      // message is encrypted to public keys (PKESK) and we have some, else the passwords.
      const toKeys = msg.getEncryptionKeyIDs().length > 0 && material.decryptionKeys.length > 0;
      result = await pgp.decrypt({
        message: msg,
        ...(toKeys ? { decryptionKeys: material.decryptionKeys } : { passwords: material.passwords }),
        verificationKeys: material.verificationKeys,
        format: 'binary',
        config,
      });
    } else {
      result = await pgp.verify({ message: msg, verificationKeys: material.verificationKeys, format: 'binary', config });
    }
  } catch (e) {
    if (e instanceof OpenPGPError) throw e;
    // openpgp.js's words for "no session key opened" (a wrong key or passphrase); ours say whom for.
    const why = encrypted && isNoSessionKey(e) ? noSessionKey(msg, material) : message(e);
    throw new OpenPGPError(`cannot ${encrypted ? 'decrypt' : 'read'} OpenPGP packet: ${why}`);
  }
  // Verdicts of signatures come when the data has been read; never leave one unhandled.
  const verdicts = result.signatures.map((s) =>
    s.verified.then(
      () => undefined,
      (e: unknown) => message(e),
    ),
  );
  const data = result.data as unknown as ReadableStream<Uint8Array>;
  return { plaintext: tampered(fromWebStream(data)), signatures: () => Promise.all(verdicts) };
}

/**
 * --require-signature over a whole packet: at least one signature, in any OpenPGP layer, made
 * by an accepted key and verified. A packet with no OpenPGP layer, or none signed, is refused;
 * so is one whose only signatures are by other keys or do not verify.
 */
export async function requireSignature(layers: OpenPGPLayer[]): Promise<void> {
  const verdicts = (await Promise.all(layers.map((l) => l.signatures()))).flat();
  if (verdicts.length === 0) throw new OpenPGPError('packet is not signed, and --require-signature was given');
  if (verdicts.some((v) => v === undefined)) return;
  throw new OpenPGPError(`no valid signature by an accepted key: ${verdicts.join('; ')}`);
}

async function* latin1(src: AsyncIterable<Buffer>): AsyncGenerator<Uint8Array> {
  for await (const b of src) yield b.toString('latin1') as unknown as Uint8Array;
}
