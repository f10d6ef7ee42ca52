// OpenPGP keys made with the real gpg, in a throwaway GNUPGHOME, for tests that sign or
// encrypt packets. Ed25519/Cv25519: made in well under a second.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runSync, tempDir } from './cli.js';

export interface KeyPair {
  /** Armored public key file. */
  pub: string;
  /** Armored secret key file (no passphrase). */
  sec: string;
}

function gpg(home: string, args: string[]): Buffer {
  const r = runSync('gpg', ['--batch', '--yes', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { env: { ...process.env, GNUPGHOME: home } });
  if (r.code !== 0) throw new Error(`gpg ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A key that signs (ed25519) and decrypts (cv25519 subkey), exported to files. */
export function makeKey(name: string, dir = tempDir('fspool-keys-')): KeyPair {
  const home = join(dir, `gnupg-${name}`);
  mkdirSync(home, { mode: 0o700 });
  const uid = `${name} <${name}@fspool.test>`;
  gpg(home, ['--quick-gen-key', uid, 'ed25519', 'sign', 'never']);
  const fpr = /fpr:+([0-9A-F]{40}):/.exec(gpg(home, ['--with-colons', '--list-keys', uid]).toString())![1]!;
  gpg(home, ['--quick-add-key', fpr, 'cv25519', 'encr', 'never']);
  const pub = join(dir, `${name}.pub`);
  const sec = join(dir, `${name}.sec`);
  writeFileSync(pub, gpg(home, ['--armor', '--export', uid]));
  writeFileSync(sec, gpg(home, ['--armor', '--export-secret-keys', uid]), { mode: 0o600 });
  runSync('gpgconf', ['--kill', 'all'], { env: { ...process.env, GNUPGHOME: home } });
  return { pub, sec };
}
