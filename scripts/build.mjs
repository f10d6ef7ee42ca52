// Bundle the CLI into one CommonJS file: one file to read and compile at start-up is the
// cheapest start Node 20 offers (bench/README.md, cold start). Native addons stay outside.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));

const result = await build({
  write: false,
  // The CLI, and the decode worker it starts (src/codec/decodeThread.ts), on its own: a thread
  // loads only what decoding needs.
  entryPoints: { fspool: 'src/cli/entry.ts', 'decode-worker': 'src/codec/decodeWorker.ts' },
  outdir: 'dist',
  outExtension: { '.js': '.cjs' },
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  legalComments: 'none',
  // Loaded on first use from node_modules: openpgp is large, zstd-napi and better-sqlite3 are
  // native addons.
  external: ['openpgp', 'zstd-napi', 'better-sqlite3'],
  // yargs uses two functions of node:assert; loading it costs ~10 ms of start-up.
  alias: { assert: './src/cli/assert-lite.ts', 'string-width': './src/cli/string-width-lazy.ts' },
  logLevel: 'warning',
  define: {
    'import.meta.url': 'import_meta_url',
    FSPOOL_VERSION: JSON.stringify(version),
    // yargs reads process.stdout.columns when it is imported, which creates the stdout
    // stream; fspool writes fd 1 directly and must not touch process.stdout at all.
    'process.stdout.columns': 'undefined',
  },
  banner: { js: "const import_meta_url = require('node:url').pathToFileURL(__filename).href;" },
});

// Replace the bundle atomically: a test running bin/fspool meanwhile sees the old or the new.
mkdirSync('dist', { recursive: true });
for (const f of result.outputFiles) {
  writeFileSync(`${f.path}.tmp`, f.contents);
  renameSync(`${f.path}.tmp`, f.path);
}

// The V8 code cache bin/fspool loads: written after a run through yargs' set-up and parse,
// which every command shares, so the functions it compiled lazily are in the cache too.
rmSync('dist/fspool.cjs.cache', { force: true });
execFileSync(process.execPath, ['bin/fspool', '--version'], {
  env: { ...process.env, FSPOOL_WRITE_CODE_CACHE: '1' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
