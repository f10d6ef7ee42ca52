#!/usr/bin/env node
// Before `npm pack` (package.json "prepack"): this platform's native binaries into
// prebuilds/PLATFORM-ARCH/, which the package carries so that installing it here needs no
// compiler (src/sys/native.ts finds them, scripts/install.mjs checks them). `--clean`
// ("postpack") removes them again: in a clone, binaries are compiled, never prebuilt.
//
// fspool's own: every binary node-gyp makes from binding.gyp (build/Release/NAME.node and
// executables), under its own name; its addons must be N-API ones, which load in any Node.
// The dependencies' (package.json fspool.nativeDependencies): their compiled addon from
// node_modules as DEPENDENCY.napi.node, or DEPENDENCY.abiN.node for one built against this
// Node's ABI only.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
process.chdir(root);
const out = join('prebuilds', `${process.platform}-${process.arch}`);

if (process.argv[2] === '--clean') {
  rmSync('prebuilds', { recursive: true, force: true });
  process.exit(0);
}

const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const require = createRequire(join(root, 'package.json'));

// Bring build/Release up to date without deleting it first (tests may be running from it).
execFileSync('node-gyp', [statSync('build/config.gypi', { throwIfNoEntry: false }) ? 'build' : 'rebuild', '--silent'], { stdio: 'inherit' });

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const name of readdirSync('build/Release')) {
  const st = statSync(join('build/Release', name));
  if (st.isFile() && (name.endsWith('.node') || st.mode & 0o111)) copyFileSync(join('build/Release', name), join(out, name));
}
for (const [dep, { addon, napi }] of Object.entries(pkg.fspool.nativeDependencies)) {
  const dir = dirname(require.resolve(`${dep}/package.json`));
  const { version } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  if (version !== pkg.devDependencies[dep]) throw new Error(`node_modules has ${dep} ${version}, package.json pins ${pkg.devDependencies[dep]}: run npm ci`);
  copyFileSync(join(dir, addon), join(out, `${dep}.${napi ? 'napi' : `abi${process.versions.modules}`}.node`));
}
console.error(`prebuild: ${readdirSync(out).join(', ')} in ${out}`);
