// OpenPGP's string-to-key (RFC 4880 §3.7.1.1-3.7.1.3) for passphrase-encrypted session keys,
// with Node's hashes fed the salted passphrase in 64 KiB blocks.
//
// openpgp.js 6.3.2 builds the whole iterated input in one array before hashing it: 65 MB for
// GnuPG's default count (65,011,712), and twice for AES-256 keyed by SHA-1, so one `gpg -c`
// packet costs ~0.5 s of allocation and copying. Headers that only decryption reveals are not
// cached (spec/state-db.md), so every scan of a queue pays it for each such packet. Here the
// same bytes are hashed from a reused block: the hash alone, ~6x less. The output is the
// same (test/s2k.test.ts compares it with openpgp.js's for every type, hash and key size);
// anything else (Argon2, GnuPG's extensions, a hash Node lacks) stays openpgp.js's.
import type { Message } from 'openpgp';
import { createHash } from '../sys/lazy.js';

/** OpenPGP hash algorithm ids → Node's names (RFC 4880 §9.4, RFC 9580 §9.5): every hash an S2K may name. */
export const HASH_NAMES: Record<number, string> = { 1: 'md5', 2: 'sha1', 3: 'ripemd160', 8: 'sha256', 9: 'sha384', 10: 'sha512', 11: 'sha224', 12: 'sha3-256', 14: 'sha3-512' };

const SKESK = 3;
const BLOCK = 64 * 1024;

/** The fields of openpgp.js's S2K object that say how to derive the key. */
interface GenericS2K {
  type: string;
  algorithm: number;
  salt: Uint8Array | null;
  getCount(): number;
  produceKey(passphrase: string, numBytes: number): Promise<Uint8Array>;
}

/**
 * The key `numBytes` long that `passphrase` gives: RFC 4880's simple, salted or iterated and
 * salted S2K with hash `hash` (a Node name); `count` is the iterated octet count (0 otherwise).
 */
export function produceKey(hash: string, salt: Uint8Array | null, count: number, passphrase: string, numBytes: number): Buffer {
  const data = Buffer.concat([salt ?? Buffer.alloc(0), Buffer.from(passphrase, 'utf8')]);
  // At least the salted passphrase once, however small the count (§3.7.1.3); nothing to
  // repeat when there is nothing (the simple S2K of an empty passphrase).
  const total = data.length === 0 ? 0 : Math.max(count, data.length);
  const block = data.length === 0 ? data : Buffer.alloc(Math.max(1, Math.floor(BLOCK / data.length)) * data.length);
  for (let at = 0; at < block.length; at += data.length) data.copy(block, at);
  const out: Buffer[] = [];
  let length = 0;
  // Each further hash context is preloaded with one more zero octet (§3.7.1.1).
  for (let zeros = 0; length < numBytes; zeros++) {
    const h = createHash(hash);
    if (zeros > 0) h.update(Buffer.alloc(zeros));
    let left = total;
    while (left > 0 && left >= block.length) {
      h.update(block);
      left -= block.length;
    }
    if (left > 0) h.update(block.subarray(0, left));
    const digest = h.digest();
    out.push(digest);
    length += digest.length;
  }
  return Buffer.concat(out).subarray(0, numBytes);
}

/**
 * Have the message's passphrase packets (SKESK) derive their keys here rather than in
 * openpgp.js, where their S2K is one this file knows; the rest of the decryption (the session
 * key's own decryption and checks) is still openpgp.js's.
 */
export function fastS2K(message: Pick<Message<Uint8Array>, 'packets'>): void {
  for (const p of message.packets) {
    if ((p.constructor as unknown as { tag?: number }).tag !== SKESK) continue;
    const s2k = (p as unknown as { s2k?: GenericS2K | null }).s2k;
    if (!s2k || typeof s2k.getCount !== 'function') continue;
    const hash = HASH_NAMES[s2k.algorithm];
    if (!hash || !['simple', 'salted', 'iterated'].includes(s2k.type)) continue;
    const count = s2k.type === 'iterated' ? s2k.getCount() : 0;
    const salt = s2k.type === 'simple' ? null : s2k.salt;
    s2k.produceKey = async (passphrase, numBytes) => produceKey(hash, salt, count, passphrase, numBytes);
  }
}
