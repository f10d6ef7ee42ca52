// Whole-packet encodings on the sender: zstd, then OpenPGP, so that the result is what
// `fspl prepare | zstd | gpg -e -r KEY` produces, readable by gpg, zstd and fspl with a shell
// decoder (spec/encoding.md). OpenPGP is written the way GnuPG 2.2 reads it: SEIPD v1 with
// MDC (no AEAD), no compression inside OpenPGP (compression is zstd's job).
import { fromWebStream, toWebStream } from '../codec/chunks.js';
import { loadPrivateKeys, loadPublicKeys, openpgp, readPassphrase } from '../codec/keys.js';
import { encryptSeipd } from '../codec/seipdEncrypt.js';
import { zstdCompress } from '../codec/zstd.js';

export interface EncodeOptions {
  /** zstd level; undefined for no zstd. */
  zstdLevel?: number;
  encryptTo?: string[];
  /** Symmetric encryption with the passphrase on this file's first line. */
  passphraseFile?: string;
  signWith?: string;
  keyPassphraseFile?: string;
}

export type Encoder = (packet: AsyncIterable<Buffer>) => Promise<AsyncIterable<Buffer>>;

/**
 * Read keys and passphrases now (so a bad key file fails before a sequence number is taken)
 * and return the encoder; undefined if no encoding was asked for.
 */
export async function makeEncoder(o: EncodeOptions): Promise<Encoder | undefined> {
  const encryptTo = o.encryptTo ?? [];
  const openpgpWanted = encryptTo.length > 0 || o.passphraseFile !== undefined || o.signWith !== undefined;
  if (o.zstdLevel === undefined && !openpgpWanted) return undefined;
  const pgp = openpgpWanted ? await openpgp() : undefined;
  const encryptionKeys = encryptTo.length ? await loadPublicKeys(encryptTo) : undefined;
  const passwords = o.passphraseFile ? [readPassphrase(o.passphraseFile)] : undefined;
  const signingKeys = o.signWith ? await loadPrivateKeys([o.signWith], o.keyPassphraseFile) : undefined;
  return async (packet) => {
    let out = o.zstdLevel === undefined ? packet : await zstdCompress(packet, o.zstdLevel);
    if (!pgp) return out;
    if ((encryptionKeys || passwords) && !signingKeys) {
      // The common case, without openpgp.js's streams (src/codec/seipdEncrypt.ts).
      const fast = await encryptSeipd(out, pgp, { encryptionKeys, passwords });
      if (fast) return fast;
    }
    const config = { preferredCompressionAlgorithm: pgp.enums.compression.uncompressed, aeadProtect: false };
    const message = await pgp.createMessage({ binary: toWebStream(out), format: 'binary' });
    const encoded =
      encryptionKeys || passwords
        ? await pgp.encrypt({ message, encryptionKeys, passwords, signingKeys, format: 'binary', config })
        : await pgp.sign({ message, signingKeys: signingKeys!, format: 'binary', config });
    out = fromWebStream(encoded as unknown as ReadableStream<Uint8Array>);
    return out;
  };
}
