// Bundle the CLI into one CommonJS file: one file to read and compile at start-up is the
// cheapest start Node 20 offers (bench/README.md, cold start). Native addons stay outside.
import { build } from 'esbuild';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import Module from 'node:module';
import { join } from 'node:path';
import { writeCodeCaches } from './codeCaches.mjs';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const license = readFileSync(new URL('../LICENSE', import.meta.url), 'utf8');

const options = {
  outfile: 'dist/fspool.cjs',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  legalComments: 'none',
  // Minified, the bundle is half the text to read and to scan when a function is first compiled
  // (715 KB -> 365 KB), and its code cache is smaller: ~7 ms of every start. Not keepNames: the
  // name-preserving calls it adds cost more than that; no code here looks at a function's name.
  minify: true,
  // Loaded on first use from node_modules, the package's dependencies: openpgp is large, and
  // serve's configuration and metrics libraries would add a third to the bundle every command
  // parses at start-up, for the two commands that use them (serve, status).
  // better-sqlite3's JavaScript is bundled, evaluated on first use; its addon and zstd-napi's
  // are found by src/sys/native.ts.
  external: ['openpgp', 'smol-toml', 'valibot', 'prom-client'],
  alias: { bindings: './src/sys/bindings.cjs' },
  logLevel: 'warning',
  define: {
    'import.meta.url': 'import_meta.url',
    FSPOOL_VERSION: JSON.stringify(version),
    FSPOOL_LICENSE: JSON.stringify(license),
    // yargs reads process.stdout.columns when it is imported, which creates the stdout
    // stream; fspool writes fd 1 directly and must not touch process.stdout at all.
    'process.stdout.columns': 'undefined',
  },
  // import.meta.url, asked for only where an addon or a module is found: a URL made at every
  // start would cost every command for the few that load one.
  banner: { js: "const import_meta = { get url() { return require('node:url').pathToFileURL(__filename).href; } };" },
};
const result = await build({ ...options, write: false, metafile: true, entryPoints: ['src/cli/entry.ts'] });
// The decode worker the CLI starts (src/codec/decodeThread.ts), bundled on its own: a thread
// loads only what decoding needs.
const worker = await build({ ...options, write: false, metafile: true, entryPoints: ['src/codec/decodeWorker.ts'], outfile: 'dist/decode-worker.cjs' });

// What bin/fspool compiles, as it compiles it: the CLI's bundle already wrapped in CommonJS's
// function (so the source V8 gets is the file as read, not a concatenation V8 must flatten
// into a copy) and ASCII only (so it is a one-byte string: half the memory to read, copy and
// scan of a two-byte one, which a single non-ASCII character would make it). esbuild escapes
// non-ASCII characters in code itself, not in the comments it keeps, where \uXXXX is inert.
const cli = result.outputFiles[0];
const ascii = cli.text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
const outputs = [{ path: cli.path, contents: Module.wrap(ascii) }, ...worker.outputFiles];

// Replace the bundles atomically: a test running bin/fspool meanwhile sees the old or the new.
mkdirSync('dist', { recursive: true });
for (const f of outputs) {
  writeFileSync(`${f.path}.tmp`, f.contents);
  renameSync(`${f.path}.tmp`, f.path);
}

// The licenses of the code the package carries from other projects: what the bundle took from
// node_modules, and the dependencies whose addons are prebuilt (scripts/prebuild.mjs).
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const carried = new Set(Object.keys(pkg.fspool.nativeDependencies).map((d) => `node_modules/${d}`));
for (const input of [...Object.keys(result.metafile.inputs), ...Object.keys(worker.metafile.inputs)]) {
  const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (m) carried.add(m[1]);
}
const notices = [...carried].sort().map((dir) => {
  const { name, version, license } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const texts = [dir, join(dir, 'deps/zstd')].flatMap((d) =>
    existsSync(d) ? readdirSync(d).filter((f) => /^(licen[cs]e|notice|copying)/i.test(f)).map((f) => readFileSync(join(d, f), 'utf8').trim()) : [],
  );
  if (texts.length === 0) throw new Error(`${dir}: no license file to carry`);
  return `${'='.repeat(78)}\n${name} ${version} (${license})\n\n${texts.join('\n\n')}\n`;
});
writeFileSync('dist/THIRD-PARTY-NOTICES', `fspool's package carries code from these projects, under their licenses.\n\n${notices.join('\n')}`);

// The V8 code caches (scripts/codeCaches.mjs), each written after the run package.json names for
// it. bin/fspool loads the bundle's by the command: "process" for the commands that process
// jobs, written after a queue-process of one job (what a spooler runs most: its whole path, from
// the scan to the commit, compiled); "bundle" for every other command, written after a plain
// prepare that reads and writes nothing (start-up, the quick parser, logging, exit). A cache of
// more costs every start more to deserialize than it saves the command that uses it.
// openpgp.js's (src/sys/codeCache.ts), after a prepare that encrypts: its whole text is then
// parsed, and what encrypting runs compiled. Its passphrase is the first line of whatever file
// the run names (package.json's "{"); the packet is thrown away.
for (const f of readdirSync('dist')) if (f.endsWith('.cache')) rmSync(join('dist', f));
writeCodeCaches(pkg, { strict: true });
// Each of the bundle's caches fits it (V8 would silently compile anew at every start). Each is
// tried in a Node of its own: within one, the second compile of the same source would come
// from V8's in-memory cache and never look at the data it is given.
const fits = `const { readFileSync } = require('node:fs');
const s = new (require('node:vm').Script)(readFileSync('dist/fspool.cjs', 'latin1'), { filename: require('node:path').resolve('dist/fspool.cjs'), cachedData: readFileSync(process.argv[1]) });
process.exit(s.cachedDataRejected === false ? 0 : 1);`;
for (const cache of [`fspool.cjs.${process.arch}.cache`, `fspool.cjs.process.${process.arch}.cache`]) {
  if (spawnSync(process.execPath, ['-e', fits, join('dist', cache)], { stdio: 'inherit' }).status !== 0) throw new Error(`dist/${cache} does not fit dist/fspool.cjs: V8 rejects it`);
}

// fspool(1) from the same yargs definitions as --help (src/cli/manPage.ts), installed by
// package.json's "man". The generator is bundled like the CLI and run once, here.
const man = await build({
  ...options,
  // Run as a script by `node -`, where the bundle's top-level names would be globals (and
  // `crypto` is a read-only one): an IIFE keeps them its own.
  format: 'iife',
  write: false,
  entryPoints: undefined,
  stdin: {
    contents: `import { manPage } from './src/cli/manPage.ts';\nmanPage(${JSON.stringify(version)}).then((p) => process.stdout.write(p));`,
    resolveDir: '.',
    loader: 'ts',
  },
  outfile: 'dist/man.cjs',
});
const page = execFileSync(process.execPath, ['-'], { input: man.outputFiles[0].contents, maxBuffer: 1 << 24 });
writeFileSync('dist/fspool.1.tmp', page);
renameSync('dist/fspool.1.tmp', 'dist/fspool.1');
