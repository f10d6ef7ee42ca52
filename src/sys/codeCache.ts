// A dependency too large to compile at every load, compiled with a V8 code cache instead, as
// bin/fspool compiles the bundle: openpgp.js, which every command that meets an OpenPGP packet
// loads (in the decode worker, or in prepare's thread). Of its ~85 ms load, the cache saves ~10
// (bench/README.md, "Cold start").
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';
import { packageFile } from './native.js';

/**
 * `require(id)`, compiled with the cache `dist/ID.ARCH.cache` when there is one (V8 checks it
 * against its own version and flags and the source's length, and compiles anew when it does not
 * fit). The build and the install write it: with FSPOOL_WRITE_CODE_CACHE=ID, at the exit of a
 * run that used the module (package.json, `fspool.codeCacheRuns`). The module is not in
 * require's cache: load it once, and keep what this returns.
 */
export function requireCompiled(id: string): unknown {
  const file = createRequire(import.meta.url).resolve(id);
  let cache: string | undefined;
  let cachedData: Buffer | undefined;
  try {
    // No cache (or no dist/: the sources run unbuilt, as in-process tests do): compiled anew.
    cache = join(packageFile('dist'), `${id}.${process.arch}.cache`);
    cachedData = readFileSync(cache);
  } catch {}
  const script = new Script(Module.wrap(readFileSync(file, 'utf8')), { filename: file, cachedData });
  if (cache && process.env.FSPOOL_WRITE_CODE_CACHE === id) {
    // Replaced, not rewritten in place: a process starting meanwhile reads the old or the new.
    const at = cache;
    process.on('exit', () => {
      writeFileSync(`${at}.tmp`, script.createCachedData());
      renameSync(`${at}.tmp`, at);
    });
  }
  const mod = { exports: {} };
  (script.runInThisContext() as (...a: unknown[]) => void)(mod.exports, createRequire(file), mod, file, dirname(file));
  return mod.exports;
}
