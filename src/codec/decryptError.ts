// Why an encrypted packet could not be opened, in fspool's words: whom it is encrypted to (the
// key IDs of its session key packets, or a passphrase), what was tried, and what to give, where
// openpgp.js only says "No decryption key packets found" or "Session key decryption failed".
import type { KeyID } from 'openpgp';
import type { DecryptionMaterial } from './keys.js';

/** Session key packets: PKESK (to a public key) and SKESK (to a passphrase). */
const PKESK = 1;
const SKESK = 3;

/**
 * The most session key packets of each kind a message may have. Each may cost a key
 * derivation (an S2K of tens of milliseconds) or a private-key operation, tried at every look
 * at the queue, and a writer of jobs/ can put thousands in a small file; a sender's message
 * has one per passphrase or recipient.
 */
const MOST_SESSION_KEYS = [
  { tag: SKESK, most: 8, what: 'passphrase (SKESK)' },
  { tag: PKESK, most: 64, what: 'public-key (PKESK)' },
];

/** Why a message's session key packets are too many to try, or undefined. */
export function tooManySessionKeys(msg: { packets: Iterable<object> }): string | undefined {
  const tags = [...msg.packets].map((p) => (p.constructor as { tag?: number }).tag);
  for (const { tag, most, what } of MOST_SESSION_KEYS) {
    const n = tags.filter((t) => t === tag).length;
    if (n > most) return `it has ${n} ${what} session key packets, more than the ${most} fspool tries`;
  }
  return undefined;
}

const hex = (id: { toHex(): string }) => id.toHex().toUpperCase();
const plural = (n: number, word: string) => (n === 1 ? word : `${word}s`);

/** openpgp.js's ways of saying that no key or passphrase given opened a session key. */
export const isNoSessionKey = (e: unknown) => /session key decryption failed|no decryption key packets found/i.test(e instanceof Error ? e.message : String(e));

/** The text after "cannot decrypt OpenPGP packet: " when no session key could be decrypted. */
export function noSessionKey(msg: { getEncryptionKeyIDs(): KeyID[]; packets: Iterable<object> }, material: DecryptionMaterial): string {
  const ids = msg.getEncryptionKeyIDs();
  // A hidden recipient (gpg --throw-keyids) is named by the all-zero key ID.
  const recipients = ids.map((id) => (/^0+$/.test(id.toHex()) ? 'a hidden recipient' : hex(id)));
  const passphrase = [...msg.packets].some((p) => (p.constructor as { tag?: number }).tag === SKESK);
  const forWhom = [...(ids.length ? [`${plural(ids.length, 'key')} ${recipients.join(', ')}`] : []), ...(passphrase ? ['a passphrase'] : [])].join(' and to ');
  // As the decryption chose (src/codec/seipd.ts, openpgp.ts): the keys when the packet names
  // keys and some were given, else the passphrases.
  const toKeys = ids.length > 0 && material.decryptionKeys.length > 0;
  const keys = material.decryptionKeys.map((k) => k.getKeyIDs().map(hex).join('/'));
  const tried = toKeys
    ? `the ${plural(keys.length, 'secret key')} given (${keys.join(', ')}) cannot decrypt it`
    : material.passwords.length > 0
      ? 'the passphrase given cannot decrypt it'
      : 'no passphrase was given';
  const fix = ids.length > 0 ? `give the secret key of ${ids.length === 1 ? recipients[0] : 'one of them'} with --decrypt-key FILE` : 'give its passphrase with --passphrase-file FILE';
  return `it is encrypted to ${forWhom || 'no recipient it names'}, and ${tried}: ${fix}${passphrase && ids.length > 0 ? ' (or its passphrase with --passphrase-file FILE)' : ''}`;
}
