// A dependency too large to compile at every load, compiled with a V8 code cache instead, as
// bin/fspool compiles the bundle and by the same code (bin/compiled.cjs): openpgp.js, which
// every command that meets an OpenPGP packet loads (in the decode worker, or in prepare's
// thread). Of its ~85 ms load, the cache saves ~10 (bench/README.md, "Cold start").
import { readFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageFile } from './native.js';

type RunCompiled = (file: string, source: string, cachedData: Buffer | undefined, cache: string | undefined, id: string) => unknown;

/**
 * `require(id)`, compiled with the cache `dist/ID.ARCH.cache` when there is one. The build and
 * the install write it: with FSPOOL_WRITE_CODE_CACHE=ID, at the exit of a run that used the
 * module (package.json, `fspool.codeCacheRuns`). The module is not in require's cache: load it
 * once, and keep what this returns.
 */
export function requireCompiled(id: string): unknown {
  const require = createRequire(import.meta.url);
  const file = require.resolve(id);
  let cache: string | undefined;
  let cachedData: Buffer | undefined;
  try {
    // No cache (or no dist/: the sources run unbuilt, as in-process tests do): compiled anew.
    cache = join(packageFile('dist'), `${id}.${process.arch}.cache`);
    cachedData = readFileSync(cache);
  } catch {}
  const { runCompiled } = require(packageFile('bin/compiled.cjs')) as { runCompiled: RunCompiled };
  return runCompiled(file, Module.wrap(readFileSync(file, 'utf8')), cachedData, cache, id);
}
