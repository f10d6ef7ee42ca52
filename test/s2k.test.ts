// src/codec/s2k.ts derives passphrase keys in place of openpgp.js's own S2K: the keys must be
// the same bytes, for every S2K type, hash, count and key length a passphrase packet (SKESK)
// can ask for, and openpgp.js must keep what this file does not do.
import { createHash, randomBytes } from 'node:crypto';
import * as openpgp from 'openpgp';
import { describe, expect, it } from 'vitest';
import { fastS2K, produceKey } from '../src/codec/s2k.js';
import { prng } from './helpers/bytes.js';

const HASH_IDS = [1, 2, 3, 8, 9, 10, 11, 12, 14];

/** A version 4 SKESK packet (AES-256, no encrypted session key) with the given S2K specifier. */
function skesk(s2k: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from([4, 9]), s2k]);
  return Buffer.concat([Buffer.from([0xc3, body.length]), body]);
}

const PASSPHRASES = ['', 'a', 'correct horse battery staple', 'pässwörd ✓ 密码', 'x'.repeat(300), '\u0000nul and spaces '];

describe('S2K: the same keys as openpgp.js', () => {
  it('simple, salted, iterated and salted: every hash, key lengths 16 to 64, counts small and large', async () => {
    const random = prng(20261206);
    let compared = 0;
    for (let round = 0; round < 120; round++) {
      const type = [0, 1, 3][round % 3]!;
      const hash = HASH_IDS[Math.floor(random() * HASH_IDS.length)]!;
      // Mostly counts openpgp.js derives quickly; every tenth iterated one GnuPG's default.
      const countByte = round % 30 === 2 ? 255 : Math.floor(random() * 0x70);
      const salt = randomBytes(8);
      const spec = type === 0 ? Buffer.from([0, hash]) : type === 1 ? Buffer.concat([Buffer.from([1, hash]), salt]) : Buffer.concat([Buffer.from([3, hash]), salt, Buffer.from([countByte])]);
      const passphrase = PASSPHRASES[round % PASSPHRASES.length]!;
      const numBytes = [16, 24, 32, 48, 64][Math.floor(random() * 5)]!;
      const theirs = await openpgp.readMessage({ binaryMessage: skesk(spec) });
      const ours = await openpgp.readMessage({ binaryMessage: skesk(spec) });
      fastS2K(ours);
      const s2kOf = (m: openpgp.Message<Uint8Array>) => (m.packets[0] as unknown as { s2k: { produceKey(p: string, n: number): Promise<Uint8Array> } }).s2k;
      expect(Object.hasOwn(s2kOf(ours), 'produceKey'), `round ${round}: ours is used`).toBe(true);
      const want = Buffer.from(await s2kOf(theirs).produceKey(passphrase, numBytes));
      const got = Buffer.from(await s2kOf(ours).produceKey(passphrase, numBytes));
      expect(got.toString('hex'), `round ${round}: type ${type}, hash ${hash}, count byte ${countByte}, ${numBytes} bytes, passphrase ${JSON.stringify(passphrase.slice(0, 20))}`).toBe(want.toString('hex'));
      compared++;
    }
    expect(compared).toBe(120);
  }, 120_000);

  it('any octet count, around the 64 KiB blocks it is hashed in: the salted passphrase repeated to exactly that length', () => {
    const salt = Buffer.from('8 bytes!');
    for (const pass of ['p', 'correct horse battery staple', 'z'.repeat(70_000)]) {
      const data = Buffer.concat([salt, Buffer.from(pass)]);
      const block = Math.max(1, Math.floor(65536 / data.length)) * data.length;
      for (const count of [0, 1, data.length - 1, data.length, data.length + 1, block - 1, block, block + 1, 2 * block + 1, 3 * block + data.length + 5]) {
        const total = Math.max(count, data.length);
        const repeated = Buffer.alloc(total);
        for (let at = 0; at < total; at += data.length) data.copy(repeated, at);
        for (const numBytes of [20, 40]) {
          const want = Buffer.concat([createHash('sha1').update(repeated).digest(), createHash('sha1').update(Buffer.alloc(1)).update(repeated).digest()]).subarray(0, numBytes);
          expect(produceKey('sha1', salt, count, pass, numBytes).toString('hex'), `${pass.length}-byte passphrase, count ${count}, ${numBytes} bytes`).toBe(want.toString('hex'));
        }
      }
    }
  });

  it('a message encrypted by openpgp.js with a passphrase decrypts the same with the S2K swapped', async () => {
    const data = randomBytes(1000);
    const armored = await openpgp.encrypt({ message: await openpgp.createMessage({ binary: data }), passwords: ['swordfish'], format: 'binary' });
    const message = await openpgp.readMessage({ binaryMessage: armored as Uint8Array });
    fastS2K(message);
    const out = await openpgp.decrypt({ message, passwords: ['swordfish'], format: 'binary' });
    expect(Buffer.from(out.data as Uint8Array).equals(data)).toBe(true);
  });

  it('leaves openpgp.js its own S2K where this file has none (Argon2), and packets that are not passphrase packets', async () => {
    const encrypted = await openpgp.encrypt({
      message: await openpgp.createMessage({ binary: Buffer.from('argon2') }),
      passwords: ['swordfish'],
      format: 'binary',
      config: { s2kType: openpgp.enums.s2k.argon2 },
    });
    const message = await openpgp.readMessage({ binaryMessage: encrypted as Uint8Array });
    fastS2K(message);
    const s2k = (message.packets[0] as unknown as { s2k: object }).s2k;
    expect(Object.hasOwn(s2k, 'produceKey')).toBe(false);
    const out = await openpgp.decrypt({ message, passwords: ['swordfish'], format: 'binary' });
    expect(Buffer.from(out.data as Uint8Array).toString()).toBe('argon2');
  });
});
