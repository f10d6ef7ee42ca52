#!/usr/bin/env node
// The programs the test suite runs beside fspool, and the Debian package of each: the one list
// of them. `npm test` runs this first. Missing programs are installed with apt-get when we are
// root and have it; otherwise it stops, before anything runs, with the command to run.
// A test that needs a new program adds a line here (command, package, who needs it).
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const NEEDS = [
  // The reference implementation: interop, semantics, crash and bench comparisons.
  ['fspl', 'filespooler'],
  // External decoders, and the packets fspl users make with them.
  ['zstd', 'zstd'],
  ['gzip', 'gzip'],
  ['xz', 'xz-utils'],
  // The lock tests take fspl's lock with flock(1); the watch tests run a PID namespace; the
  // deployment tests run fspool as another user.
  ['flock', 'util-linux'],
  ['unshare', 'util-linux'],
  ['setpriv', 'util-linux'],
  // Progress and help through a pseudo-terminal.
  ['script', 'bsdutils'],
  // The disk-full tests mount a small tmpfs.
  ['mount', 'mount'],
  // OpenPGP round trips with GnuPG 2.2.
  ['gpg', 'gnupg'],
  ['gpg-agent', 'gnupg'],
  ['gpgconf', 'gnupg'],
  // Transports: NNCP and rsync; contrib/systemd's units are checked with systemd-analyze.
  ['nncp-toss', 'nncp'],
  ['nncp-exec', 'nncp'],
  ['rsync', 'rsync'],
  ['systemd-analyze', 'systemd'],
  // serve's metrics: checked by promtool, scraped by a real Prometheus server.
  ['promtool', 'prometheus'],
  ['prometheus', 'prometheus'],
  // System calls watched: a processor's fsyncs and renames (test/state-db.test.ts), which files
  // a start maps (test/start.test.ts).
  ['strace', 'strace'],
  // The package test: `man fspool` after a global install.
  ['man', 'man-db'],
  ['tar', 'tar'],
  // node-gyp, for the native addons `npm ci` compiles.
  ['python3', 'python3'],
  ['make', 'make'],
  ['g++', 'g++'],
  // The package's linux-arm64 binaries: cross-compiled by `npm pack`, and run by the package
  // test under qemu-user (through binfmt_misc, set up below).
  ['aarch64-linux-gnu-g++', 'g++-aarch64-linux-gnu'],
  ['qemu-aarch64-static', 'qemu-user-static'],
  ['update-binfmts', 'binfmt-support'],
];

// arm64 programs run through the kernel's binfmt_misc and qemu: mounted and registered as
// root (qemu-user-static registers itself only where binfmt_misc was mounted at install).
const BINFMT = '/proc/sys/fs/binfmt_misc';
function binfmtSetup() {
  if (existsSync(`${BINFMT}/qemu-aarch64`)) return;
  if (process.getuid?.() !== 0) {
    console.error(`test-deps: arm64 programs cannot run here (no ${BINFMT}/qemu-aarch64); as root: mount -t binfmt_misc binfmt_misc ${BINFMT}; update-binfmts --enable qemu-aarch64`);
    process.exit(1);
  }
  console.error('test-deps: registering qemu-aarch64 with binfmt_misc, to run arm64 programs');
  if (!existsSync(`${BINFMT}/register`)) spawnSync('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT], { stdio: 'inherit' });
  spawnSync('update-binfmts', ['--enable', 'qemu-aarch64'], { stdio: 'inherit' });
  if (!existsSync(`${BINFMT}/qemu-aarch64`)) {
    console.error(`test-deps: could not register qemu-aarch64 in ${BINFMT}`);
    process.exit(1);
  }
}

/** On PATH, or in the sbin directories a user's PATH may lack (update-binfmts). */
function onPath(cmd) {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin']) {
    if (!dir) continue;
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

const missing = NEEDS.filter(([cmd]) => !onPath(cmd));
if (missing.length === 0) {
  binfmtSetup();
  process.exit(0);
}

const commands = missing.map(([cmd]) => cmd).join(', ');
const packages = [...new Set(missing.map(([, pkg]) => pkg))];
const aptCommand = `apt-get install -y --no-install-recommends ${packages.join(' ')}`;

if (process.getuid?.() !== 0 || !onPath('apt-get')) {
  const how = onPath('apt-get') ? `run: sudo ${aptCommand}` : `install the Debian packages ${packages.join(' ')} or your system's equivalents`;
  console.error(`test-deps: the tests need ${commands} (not on PATH); ${how}; then npm test again`);
  process.exit(1);
}

console.error(`test-deps: installing ${packages.join(' ')} (for ${commands}) with apt-get`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
for (const args of [['update', '-qq'], ['install', '-y', '-qq', '--no-install-recommends', ...packages]]) {
  const r = spawnSync('apt-get', args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr);
    console.error(`test-deps: apt-get ${args[0]} failed (exit ${r.status ?? r.signal}); run ${aptCommand} yourself, then npm test again`);
    process.exit(1);
  }
}
const still = missing.filter(([cmd]) => !onPath(cmd)).map(([cmd]) => cmd);
if (still.length > 0) {
  console.error(`test-deps: apt-get installed ${packages.join(' ')}, but ${still.join(', ')} are still not on PATH (PATH=${process.env.PATH})`);
  process.exit(1);
}
binfmtSetup();
