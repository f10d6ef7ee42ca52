'use strict';
// Runs a CommonJS file compiled with a V8 code cache, which spares compiling it at every load
// (bench/README.md, "Cold start"): the bundle, for bin/fspool, and openpgp.js, for
// src/sys/codeCache.ts. V8 checks a cache against its own version, its flags and the source,
// and compiles the source anew when the cache does not fit.
const { renameSync, writeFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const { dirname } = require('node:path');
const { Script } = require('node:vm');

/**
 * Compiles `source` (the module already wrapped in CommonJS's function) with `cachedData`, runs
 * it as the module `file` and returns its exports. When the environment holds
 * FSPOOL_WRITE_CODE_CACHE=`id`, the cache is written to `cache` at the process's exit
 * (scripts/codeCaches.mjs): replaced, not rewritten in place, so that a start meanwhile reads
 * the old file or the new one.
 */
exports.runCompiled = function runCompiled(file, source, cachedData, cache, id) {
  const script = new Script(source, { filename: file, cachedData });
  if (cache !== undefined && process.env.FSPOOL_WRITE_CODE_CACHE === id) {
    process.on('exit', () => {
      writeFileSync(`${cache}.tmp`, script.createCachedData());
      renameSync(`${cache}.tmp`, cache);
    });
  }
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, createRequire(file), mod, file, dirname(file));
  return mod.exports;
};
