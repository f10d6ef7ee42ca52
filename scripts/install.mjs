#!/usr/bin/env node
// npm's install step for fspool (package.json "install"), in a clone (`npm ci`) and in an
// installed package. The native binaries are found as src/sys/native.ts says; this makes sure
// each one there works with this Node on this machine:
// - fspool's own (binding.gyp): the prebuilt ones in prebuilds/PLATFORM-ARCH/ (the npm package
//   has linux-x64's) if they load and run here, else compiled by node-gyp into build/Release/;
// - the dependencies' addons (package.json fspool.nativeDependencies): the prebuilt one, or the
//   dependency in node_modules at the version the bundle was made with (a clone's
//   devDependencies), else npm installs that version apart, which compiles it, and its addon
//   goes to build/Release/ under the prebuilt one's name.
// Compiling needs python3, make and a C++ compiler; a prebuilt install needs none of them.
// npm_config_build_from_source=true (as for node-gyp-build and prebuild-install) skips the
// prebuilt binaries.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeCodeCaches } from './codeCaches.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
process.chdir(root);
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const require = createRequire(join(root, 'package.json'));
const prebuilds = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const fromSource = process.env.npm_config_build_from_source === 'true';
const say = (line) => console.error(`fspool: ${line}`);

/** Whether a binary works here: an addon loads in a fresh node; an executable runs (its loader is content). */
function works(file) {
  if (file.endsWith('.node')) {
    return spawnSync(process.execPath, ['-e', 'require(process.argv[1])', file], { stdio: 'ignore' }).status === 0;
  }
  // Run with no input and no fd 3, it refuses to work (fspool-spawner exits at once without its
  // socket). What tells is stderr: the dynamic loader names a missing library or a glibc
  // too old. (Another architecture or libc is caught by the addons, which then fail to load.)
  const r = spawnSync(file, [], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 10_000 });
  return r.error === undefined && r.signal === null && !/error while loading shared libraries|not found \(required by|exec format error|cannot execute/i.test(r.stderr);
}

function prebuilt(names) {
  if (fromSource || !existsSync(prebuilds)) return false;
  return names.every((n) => existsSync(join(prebuilds, n)) && works(join(prebuilds, n)));
}

// fspool's own binaries: the prebuilt set is all of them, or none is used.
const own = existsSync(prebuilds) ? readdirSync(prebuilds).filter((n) => !Object.keys(pkg.fspool.nativeDependencies).some((d) => n.startsWith(`${d}.`))) : [];
if (own.length > 0 && prebuilt(own)) {
  // Nothing to compile.
} else {
  if (existsSync(prebuilds) && !fromSource) say(`the prebuilt binaries in ${prebuilds} do not work here: compiling fspool's own (node-gyp)`);
  execFileSync('node-gyp', ['rebuild', '--silent'], { stdio: 'inherit' });
}

// The dependencies' addons.
const name = (dep) => `${dep}.${pkg.fspool.nativeDependencies[dep].napi ? 'napi' : `abi${process.versions.modules}`}.node`;
const missing = [];
for (const [dep, { addon }] of Object.entries(pkg.fspool.nativeDependencies)) {
  const version = pkg.devDependencies[dep];
  if (prebuilt([name(dep)])) continue;
  let compiled;
  try {
    const pj = require.resolve(`${dep}/package.json`);
    if (JSON.parse(readFileSync(pj, 'utf8')).version === version) compiled = join(dirname(pj), addon);
  } catch {}
  if (compiled && existsSync(compiled) && works(compiled)) continue;
  missing.push(dep);
}
if (missing.length > 0) {
  const specs = missing.map((dep) => `${dep}@${pkg.devDependencies[dep]}`);
  say(`no prebuilt ${specs.join(' and ')} for Node ${process.version} (ABI ${process.versions.modules}) on ${process.platform}-${process.arch}: compiling them (a few minutes)`);
  // npm installs (and compiles) them in a directory of their own; their addons go to
  // build/Release/ under the names of the prebuilt ones. npm passes a global install's
  // settings down in npm_config_*: this install is a local one.
  mkdirSync('build/Release', { recursive: true });
  const tmp = mkdtempSync(join(root, 'build', 'deps-'));
  try {
    writeFileSync(join(tmp, 'package.json'), '{ "private": true }\n');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_config_(global|location|prefix)$/i.test(k)));
    const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm'];
    execFileSync(npm[0], [...npm.slice(1), 'install', '--no-package-lock', '--no-audit', '--no-fund', '--location=project', '--prefix', tmp, ...specs], { stdio: 'inherit', env });
    for (const dep of missing) {
      const file = join(tmp, 'node_modules', dep, pkg.fspool.nativeDependencies[dep].addon);
      if (!works(file)) throw new Error(`${dep}: ${file} was compiled but does not load`);
      copyFileSync(file, join('build/Release', name(dep)));
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// The V8 code caches (the bundle's two, which bin/fspool loads, and openpgp.js's), for this
// Node: the package's were made by the Node that packed it, and V8 rejects a cache from another
// version (then the code is compiled at every start). In a clone, the build writes them, after
// the same runs.
if (existsSync('prebuilds')) writeCodeCaches(pkg, { strict: false });
