// Signed receipts (spec/receipts.md, "Signed receipts"): a receipt wrapped in an OpenPGP signed
// message (one-pass signature, literal data, signature), made and checked with the keys fspool
// already reads. A receipt is a few KB: it is signed and read whole, not streamed.
import { FspoolError } from '../errors.js';
import { MAX_RECEIPT_BODY, RECEIPT_MAGIC } from '../packet/receipt.js';
import { loadPrivateKeys, loadPublicKeys, openpgp } from './keys.js';

export async function signReceipt(receipt: Buffer, keyFile: string, keyPassphraseFile?: string): Promise<Buffer> {
  const pgp = await openpgp();
  const signingKeys = await loadPrivateKeys([keyFile], keyPassphraseFile);
  const message = await pgp.createMessage({ binary: receipt, format: 'binary' });
  const signed = await pgp.sign({ message, signingKeys, format: 'binary' });
  return Buffer.from(signed as Uint8Array);
}

/**
 * The receipt inside `input` (plain, or an OpenPGP signed message, binary or armored). With
 * `requireSignature` (public key files), only a receipt signed by one of those keys, with a
 * signature that verifies, is returned.
 */
export async function openReceipt(input: Buffer, requireSignature: string[] = []): Promise<{ receipt: Buffer; signed: boolean }> {
  if (input.subarray(0, RECEIPT_MAGIC.length).equals(RECEIPT_MAGIC)) {
    if (requireSignature.length > 0) throw new FspoolError('the receipt is not signed, and --require-signature was given: nothing applied');
    return { receipt: input, signed: false };
  }
  const armored = input.toString('latin1', 0, 64).trimStart().startsWith('-----BEGIN PGP');
  if (!armored && (input.length === 0 || (input[0]! & 0x80) === 0)) {
    throw new FspoolError(input.length === 0 ? 'no receipt on stdin (0 bytes)' : 'not an fspool receipt (bad magic)');
  }
  const pgp = await openpgp();
  // A compressed packet may hold gigabytes in a megabyte, unpacked before any signature is
  // looked at: nothing in it may exceed what a receipt can be (a header and its body).
  const config = { maxDecompressedMessageSize: MAX_RECEIPT_BODY + (64 << 10) };
  let message: import('openpgp').Message<Uint8Array>;
  try {
    message = (armored ? await pgp.readMessage({ armoredMessage: input.toString('utf8'), config }) : await pgp.readMessage({ binaryMessage: input, config })) as import('openpgp').Message<Uint8Array>;
  } catch (e) {
    if (unpackedTooFar(e)) throw tooBig();
    throw new FspoolError(`not an fspool receipt, nor a readable OpenPGP message: ${(e as Error).message}`);
  }
  if (requireSignature.length === 0) {
    const data = message.getLiteralData();
    if (!(data instanceof Uint8Array)) throw new FspoolError('the OpenPGP message holds no receipt (encrypted, or no literal data)');
    return { receipt: Buffer.from(data), signed: message.getSigningKeyIDs().length > 0 };
  }
  const verificationKeys = await loadPublicKeys(requireSignature);
  let result;
  try {
    result = await pgp.verify({ message, verificationKeys, format: 'binary', config });
  } catch (e) {
    if (unpackedTooFar(e)) throw tooBig();
    throw new FspoolError(`cannot read the signed receipt: ${(e as Error).message}`);
  }
  if (result.signatures.length === 0) throw new FspoolError('the receipt is not signed, and --require-signature was given: nothing applied');
  const verdicts = await Promise.all(result.signatures.map((s) => s.verified.then(() => undefined, (e: unknown) => (e as Error).message)));
  if (!verdicts.some((v) => v === undefined)) {
    throw new FspoolError(`the receipt has no valid signature by an accepted key (${verdicts.join('; ')}): nothing applied`);
  }
  return { receipt: Buffer.from(result.data as unknown as Uint8Array), signed: true };
}

/** openpgp.js's refusal to unpack past maxDecompressedMessageSize (zlib's words, and bzip2's). */
const unpackedTooFar = (e: unknown) => /Maximum decompressed (message )?size exceeded/.test((e as Error).message);

const tooBig = () => new FspoolError(`the OpenPGP message unpacks to more than a receipt can be (${MAX_RECEIPT_BODY} bytes): not a receipt; nothing applied`);
