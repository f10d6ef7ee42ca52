// Writes the V8 code caches that bin/fspool and src/sys/codeCache.ts load: each after the run
// package.json's fspool.codeCacheRuns names for it, in a Node started with
// FSPOOL_WRITE_CODE_CACHE=NAME, which writes the cache at its exit. Used by the build (in a
// clone) and by the install (V8 rejects a cache made by another Node version). Run from the
// package's root.
//
// A run may name "{queue}": a fresh queue holding one job, seq 1, with no payload, made for it
// and removed after.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** `strict`: a run that fails is an error (the build); else it only leaves that cache out (the install). */
export function writeCodeCaches(pkg, { strict }) {
  for (const [name, run] of Object.entries(pkg.fspool.codeCacheRuns)) {
    const tmp = run.includes('{queue}') ? mkdtempSync(join(tmpdir(), 'fspool-cache-')) : undefined;
    try {
      const queue = tmp && join(tmp, 'queue');
      if (queue) {
        execFileSync(process.execPath, ['bin/fspool', 'queue-init', '-q', queue], { stdio: 'ignore' });
        const job = openSync(join(queue, 'jobs', 'fspl-1.fspl'), 'w');
        try {
          execFileSync(process.execPath, ['bin/fspool', 'prepare', '-s', '-', '-i', '/dev/null'], { stdio: ['ignore', job, 'ignore'] });
        } finally {
          closeSync(job);
        }
      }
      const argv = ['bin/fspool', ...run.map((a) => (a === '{queue}' ? queue : a))];
      const r = spawnSync(process.execPath, argv, { env: { ...process.env, FSPOOL_WRITE_CODE_CACHE: name }, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
      if (strict && r.status !== 0) throw new Error(`code cache ${name}: ${argv.join(' ')} exited with ${r.status ?? r.signal}: ${r.stderr}`);
    } catch (e) {
      if (strict) throw e;
    } finally {
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    }
  }
}
