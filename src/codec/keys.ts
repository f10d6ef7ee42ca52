// OpenPGP keys and passphrases, from options or the user's default location. Loaded only when
// a packet (or a prepare option) needs them, since openpgp.js costs ~60 ms to load.
//
// Default location (spec/encoding.md): $FSPOOL_KEYS, else $XDG_CONFIG_HOME/fspool (else
// ~/.config/fspool):
//   keys/*              secret keys to decrypt with (armored or binary)
//   passphrase          passphrase for symmetric packets
//   key-passphrase      passphrase that unlocks the secret keys
// Not the queue directory: queues are synced between machines, secret keys must not be.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Key, PrivateKey } from 'openpgp';
import { errnoWords, FspoolError } from '../errors.js';
import { log } from '../log.js';
import { requireCompiled } from '../sys/codeCache.js';
import { readFileNoWait } from '../sys/fd.js';
import { os } from '../sys/lazy.js';

export interface KeyOptions {
  /** Secret keys to decrypt with; none means the default location. */
  decryptKeys?: string[];
  /** Symmetric passphrase file (prepare: encrypt with it; processing: try it). */
  passphraseFile?: string;
  /** Unlocks protected secret keys (decryption and --sign-with). */
  keyPassphraseFile?: string;
  /** Only packets signed by one of these public keys are accepted. */
  requireSignature?: string[];
  /** Look in the default location when no key or passphrase file is given (default: yes). */
  defaults?: boolean;
}

export function configDir(): string {
  if (process.env.FSPOOL_KEYS) return process.env.FSPOOL_KEYS;
  return join(process.env.XDG_CONFIG_HOME || join(os().homedir(), '.config'), 'fspool');
}

/** gpg's --passphrase-file rule: the first line, without its line end. */
export function readPassphrase(file: string): string {
  let data: Buffer;
  try {
    data = readFileNoWait(file);
  } catch (e) {
    throw new FspoolError(`cannot read passphrase file ${file}: ${errnoWords(e)}`);
  }
  if (data.length === 0) throw new FspoolError(`passphrase file ${file} is empty (a pipe no one writes to?)`);
  return data.toString('utf8').split(/\r?\n/)[0]!;
}

type OpenPGP = typeof import('openpgp');
let lib: OpenPGP | undefined;
// Required, not import()ed: the bundle runs as CommonJS inside vm.Script (bin/fspool), where a
// dynamic import() has no loader.
export const openpgp = async (): Promise<OpenPGP> => (lib ??= requireCompiled('openpgp') as OpenPGP);

async function readKeyFile<T extends Key>(file: string, read: (data: Buffer, armored: boolean) => Promise<T[]>): Promise<T[]> {
  let data: Buffer;
  try {
    data = readFileNoWait(file);
  } catch (e) {
    throw new FspoolError(`cannot read key file ${file}: ${errnoWords(e)}`);
  }
  try {
    return await read(data, data.toString('latin1', 0, 64).trimStart().startsWith('-----BEGIN PGP'));
  } catch (e) {
    throw new FspoolError(`${file} holds no usable OpenPGP key: ${(e as Error).message}`);
  }
}

export async function loadPublicKeys(files: string[]): Promise<Key[]> {
  const pgp = await openpgp();
  const keys = await Promise.all(
    files.map((f) => readKeyFile(f, (d, armored) => (armored ? pgp.readKeys({ armoredKeys: d.toString('utf8') }) : pgp.readKeys({ binaryKeys: d })))),
  );
  return keys.flat();
}

export async function loadPrivateKeys(files: string[], passphraseFile?: string): Promise<PrivateKey[]> {
  const pgp = await openpgp();
  const keys = (
    await Promise.all(
      files.map((f) =>
        readKeyFile(f, (d, armored) => (armored ? pgp.readPrivateKeys({ armoredKeys: d.toString('utf8') }) : pgp.readPrivateKeys({ binaryKeys: d }))),
      ),
    )
  ).flat();
  const passphrase = passphraseFile ? readPassphrase(passphraseFile) : undefined;
  return Promise.all(
    keys.map(async (k) => {
      if (k.isDecrypted()) return k;
      if (passphrase === undefined) throw new FspoolError(`secret key ${k.getKeyID().toHex()} is protected: give --key-passphrase-file`);
      try {
        return await pgp.decryptKey({ privateKey: k, passphrase });
      } catch (e) {
        throw new FspoolError(`cannot unlock secret key ${k.getKeyID().toHex()}: ${(e as Error).message}`);
      }
    }),
  );
}

export interface DecryptionMaterial {
  decryptionKeys: PrivateKey[];
  passwords: string[];
  verificationKeys: Key[];
}

/**
 * A key or passphrase file given to a reader (or found in the default location) cannot be used:
 * a mistake in the configuration, not in a packet. Readers stop on it (exit 1) instead of
 * reporting every encoded job file as unreadable.
 */
export class KeyFileError extends FspoolError {
  override name = 'KeyFileError';
}

/** A secret key file others may read is worth a word: a key is only as secret as its file. */
function warnIfShared(file: string): void {
  try {
    const mode = statSync(file).mode;
    if (mode & 0o077) log.warn(`secret key file ${file} can be read by ${mode & 0o007 ? 'any user' : 'its group'} (mode ${(mode & 0o777).toString(8)}): chmod 600 ${file}`);
  } catch {
    /* unreadable: loading it says why */
  }
}

/** What a processor decrypts and verifies with; read once, on first need. */
export class Keyring {
  private material: Promise<DecryptionMaterial> | undefined;

  constructor(readonly opts: KeyOptions) {}

  get requiresSignature(): boolean {
    return (this.opts.requireSignature?.length ?? 0) > 0;
  }

  load(): Promise<DecryptionMaterial> {
    this.material ??= this.read().catch((e: unknown) => {
      throw e instanceof FspoolError ? new KeyFileError(e.message) : e;
    });
    return this.material;
  }

  private async read(): Promise<DecryptionMaterial> {
    const dir = configDir();
    const defaults = this.opts.defaults !== false;
    const keyPass = this.opts.keyPassphraseFile ?? (defaults && existsSync(join(dir, 'key-passphrase')) ? join(dir, 'key-passphrase') : undefined);
    const passFile = this.opts.passphraseFile ?? (defaults && existsSync(join(dir, 'passphrase')) ? join(dir, 'passphrase') : undefined);
    let decryptionKeys: PrivateKey[];
    if (this.opts.decryptKeys?.length) {
      // Named on the command line: each must be usable.
      decryptionKeys = await loadPrivateKeys(this.opts.decryptKeys, keyPass);
    } else if (defaults && existsSync(join(dir, 'keys'))) {
      // Whatever lies in the keys directory: a file that holds no usable secret key (a public
      // key put there by mistake, a README) is skipped with a WARN, not fatal to every packet.
      decryptionKeys = [];
      for (const f of readdirSync(join(dir, 'keys')).sort().map((n) => join(dir, 'keys', n))) {
        warnIfShared(f);
        try {
          decryptionKeys.push(...(await loadPrivateKeys([f], keyPass)));
        } catch (e) {
          log.warn(`${(e as Error).message}; skipped`);
        }
      }
    } else {
      decryptionKeys = [];
    }
    for (const f of this.opts.decryptKeys ?? []) warnIfShared(f);
    return {
      decryptionKeys,
      passwords: passFile ? [readPassphrase(passFile)] : [],
      verificationKeys: this.requiresSignature ? await loadPublicKeys(this.opts.requireSignature!) : [],
    };
  }
}
